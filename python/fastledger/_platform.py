"""What durable writes and file locks take on each operating system, in one place.

The journal's promise, that an acknowledged batch survives a power cut and that one writer at a
time appends to it, rests on two things the operating systems give in different ways:

- A durable flush. On Linux and Windows `os.fsync` reaches stable storage (Windows implements
  it with FlushFileBuffers). On macOS `fsync` only hands the data to the drive, which may keep
  it in its volatile cache for seconds: only `fcntl(F_FULLFSYNC)` asks the drive to write its
  cache out, so `fsync_file` uses that there.
- Whole-file advisory locks. POSIX systems have `flock`; Windows has byte-range locks
  (LockFileEx, through ctypes: `msvcrt.locking` has no shared locks), which are mandatory for
  the bytes they cover, so the lock here covers one byte far past any data a file will ever
  hold and leaves reads and writes alone.

Both kinds of lock belong to the open file (the open file description on POSIX, the handle on
Windows), not to the process: two `os.open` calls of one path in one process give two locks
that conflict with each other, and a lock goes when the file it was taken through is closed or
its process ends. Take a lock once per open file, and unlock it before taking another kind:
`flock` converts a second lock of the same file, Windows would hold both. Linux emulates
`flock` on NFS with byte-range locks, which belong to the process instead: keep a journal on a
local disk.
"""

from __future__ import annotations

import errno
import os
import sys

__all__ = [
    "fsync_directory",
    "fsync_file",
    "lock_exclusive",
    "lock_shared",
    "lock_shared_nonblocking",
    "try_lock_exclusive",
    "unlock",
]

if sys.platform == "win32":
    import ctypes
    import msvcrt
    from ctypes import wintypes

    def fsync_file(fd: int) -> None:
        """Makes the data and size of the open file `fd` durable (it survives a power cut):
        `os.fsync` is FlushFileBuffers here, which flushes the drive's cache too."""
        os.fsync(fd)

    def fsync_directory(path: str | os.PathLike[str]) -> None:
        """Nothing to do on Windows: `os.open` cannot open a directory there, so there is no
        handle to flush, and NTFS journals its metadata, so a file's creation or rename is
        either wholly there after a crash or wholly absent, never torn. What must survive a
        power cut is made durable by `fsync_file` of the file itself.
        """

    class _Overlapped(ctypes.Structure):
        """OVERLAPPED, which names the offset of the range that LockFileEx locks."""

        _fields_ = (
            ("internal", ctypes.c_size_t),
            ("internal_high", ctypes.c_size_t),
            ("offset", wintypes.DWORD),
            ("offset_high", wintypes.DWORD),
            ("event", wintypes.HANDLE),
        )

    _kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    _lock_file_ex = _kernel32.LockFileEx
    _lock_file_ex.argtypes = (
        wintypes.HANDLE,
        wintypes.DWORD,
        wintypes.DWORD,
        wintypes.DWORD,
        wintypes.DWORD,
        ctypes.POINTER(_Overlapped),
    )
    _lock_file_ex.restype = wintypes.BOOL
    _unlock_file_ex = _kernel32.UnlockFileEx
    _unlock_file_ex.argtypes = (
        wintypes.HANDLE,
        wintypes.DWORD,
        wintypes.DWORD,
        wintypes.DWORD,
        ctypes.POINTER(_Overlapped),
    )
    _unlock_file_ex.restype = wintypes.BOOL

    _LOCKFILE_FAIL_IMMEDIATELY = 0x1
    _LOCKFILE_EXCLUSIVE_LOCK = 0x2
    _ERROR_LOCK_VIOLATION = 33
    _ERROR_NOT_LOCKED = 158
    # The one byte locked: 4 EiB into the file, far past any journal.
    _LOCK_OFFSET = 1 << 62

    def _lock_range() -> _Overlapped:
        return _Overlapped(0, 0, _LOCK_OFFSET & 0xFFFF_FFFF, _LOCK_OFFSET >> 32, None)

    def _lock(fd: int, flags: int) -> bool:
        """Takes the lock byte with LockFileEx; False if another open file holds it and
        `flags` asks not to wait."""
        handle = msvcrt.get_osfhandle(fd)
        if _lock_file_ex(handle, flags, 0, 1, 0, ctypes.byref(_lock_range())):
            return True
        error = ctypes.get_last_error()
        if error == _ERROR_LOCK_VIOLATION and flags & _LOCKFILE_FAIL_IMMEDIATELY:
            return False
        raise ctypes.WinError(error)

    def try_lock_exclusive(fd: int) -> bool:
        """Takes the exclusive lock of `fd` if no other open file holds a lock of the file."""
        return _lock(fd, _LOCKFILE_EXCLUSIVE_LOCK | _LOCKFILE_FAIL_IMMEDIATELY)

    def lock_exclusive(fd: int) -> None:
        """Takes the exclusive lock of `fd`, waiting while other open files hold locks."""
        _lock(fd, _LOCKFILE_EXCLUSIVE_LOCK)

    def lock_shared(fd: int) -> None:
        """Takes a shared lock of `fd`, waiting while another open file holds the exclusive
        lock."""
        _lock(fd, 0)

    def lock_shared_nonblocking(fd: int) -> bool:
        """Takes a shared lock of `fd` unless another open file holds the exclusive lock."""
        return _lock(fd, _LOCKFILE_FAIL_IMMEDIATELY)

    def unlock(fd: int) -> None:
        """Releases the lock `fd` holds; nothing if it holds none. Release before closing:
        Windows frees the lock of a closed handle only when it gets to it."""
        handle = msvcrt.get_osfhandle(fd)
        if not _unlock_file_ex(handle, 0, 1, 0, ctypes.byref(_lock_range())):
            error = ctypes.get_last_error()
            if error != _ERROR_NOT_LOCKED:
                raise ctypes.WinError(error)

else:
    import ctypes
    import fcntl

    # The errors of F_FULLFSYNC on a file system that does not implement it (network and some
    # FUSE file systems on macOS); a plain fsync is then the most that file system offers.
    _FULLFSYNC_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP})

    # macOS's F_FULLFSYNC, named here for the systems whose fcntl module lacks it: there the
    # kernel answers EINVAL, so the tests exercise the fallback of `_fsync_past_drive_cache`.
    _F_FULLFSYNC = 51

    def _fsync_past_drive_cache(fd: int) -> None:
        """Flushes through the drive's cache with F_FULLFSYNC, or with fsync where the file
        system does not support it."""
        try:
            fcntl.fcntl(fd, getattr(fcntl, "F_FULLFSYNC", _F_FULLFSYNC))
        except OSError as error:
            if error.errno not in _FULLFSYNC_UNSUPPORTED:
                raise
            os.fsync(fd)

    def fsync_file(fd: int) -> None:
        """Makes the data and size of the open file `fd` durable (it survives a power cut)."""
        if sys.platform == "darwin":
            _fsync_past_drive_cache(fd)
        else:
            os.fsync(fd)

    def fsync_directory(path: str | os.PathLike[str]) -> None:
        """Makes the creation, rename or removal of files in the directory `path` durable."""
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            fsync_file(fd)
        finally:
            os.close(fd)

    # flock calls that cannot wait are made with the GIL held. `fcntl.flock` lets go of the
    # GIL for every call, and a thread that lets go of it while other threads run Python waits
    # to take it back, up to the interpreter's switch interval: the journal's committer thread,
    # which probes and takes locks around every write, lost more time so than in the calls.
    _libc = ctypes.PyDLL(None, use_errno=True)
    _flock = _libc.flock
    _flock.argtypes = (ctypes.c_int, ctypes.c_int)
    _flock.restype = ctypes.c_int

    def _flock_without_waiting(fd: int, operation: int) -> bool:
        """flock(fd, operation) for an operation that never waits; False if it would."""
        while _flock(fd, operation) != 0:
            error = ctypes.get_errno()
            if error == errno.EWOULDBLOCK:
                return False
            if error != errno.EINTR:
                raise OSError(error, os.strerror(error))
        return True

    def try_lock_exclusive(fd: int) -> bool:
        """Takes the exclusive lock of `fd` if no other open file holds a lock of the file."""
        return _flock_without_waiting(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def lock_exclusive(fd: int) -> None:
        """Takes the exclusive lock of `fd`, waiting while other open files hold locks."""
        if not try_lock_exclusive(fd):
            fcntl.flock(fd, fcntl.LOCK_EX)

    def lock_shared(fd: int) -> None:
        """Takes a shared lock of `fd`, waiting while another open file holds the exclusive
        lock."""
        if not lock_shared_nonblocking(fd):
            fcntl.flock(fd, fcntl.LOCK_SH)

    def lock_shared_nonblocking(fd: int) -> bool:
        """Takes a shared lock of `fd` unless another open file holds the exclusive lock."""
        return _flock_without_waiting(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)

    def unlock(fd: int) -> None:
        """Releases the lock `fd` holds; nothing if it holds none."""
        _flock_without_waiting(fd, fcntl.LOCK_UN)
