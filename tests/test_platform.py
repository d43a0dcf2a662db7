"""The platform layer for real: fsync on real files and directories, and whole-file locks
contended by two processes (and by two opens in one process, which conflict as well)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fastledger import _platform

# A descriptor number far above any this process opens.
NEVER_OPEN_FD = 1_000_000

# How long a test waits for another process before it fails, in seconds.
WAIT_S = 30.0

# The other process: opens the file, then either answers one probe of the lock ("try" or
# "shared": True or False) or takes a lock, says "held", and keeps it until its stdin closes.
CHILD = """
import os, sys
from fastledger import _platform

path, action = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_RDWR)
if action == "try":
    print(_platform.try_lock_exclusive(fd), flush=True)
elif action == "shared":
    print(_platform.lock_shared_nonblocking(fd), flush=True)
else:
    if action == "hold_exclusive":
        _platform.lock_exclusive(fd)
    else:
        assert _platform.lock_shared_nonblocking(fd)
    print("held", flush=True)
    sys.stdin.read()
    _platform.unlock(fd)
os.close(fd)
"""


def run_child(path: Path, action: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), action],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def probe(path: Path, action: str) -> bool:
    """What another process gets from one nonblocking lock call on `path`."""
    child = run_child(path, action)
    out, _ = child.communicate(timeout=WAIT_S)
    assert child.returncode == 0
    return {"True": True, "False": False}[out.strip()]


@contextmanager
def held_by_another_process(path: Path, action: str) -> Iterator[subprocess.Popen[str]]:
    child = run_child(path, action)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "held"
        yield child
    finally:
        if child.stdin is not None and not child.stdin.closed:
            child.stdin.close()
        child.wait(timeout=WAIT_S)


@pytest.fixture
def lock_file(tmp_path: Path) -> Path:
    path = tmp_path / "LOCK"
    path.write_bytes(b"")
    return path


@contextmanager
def opened(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR)
    try:
        yield fd
    finally:
        os.close(fd)


@contextmanager
def opened_new(path: Path) -> Iterator[int]:
    flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, 0o644)
    try:
        yield fd
    finally:
        os.close(fd)


def test_fsync_file_keeps_what_was_written(tmp_path: Path) -> None:
    path = tmp_path / "data"
    with opened_new(path) as fd:
        os.write(fd, b"a batch")
        _platform.fsync_file(fd)
    assert path.read_bytes() == b"a batch"


def test_fsync_file_refuses_what_is_no_open_file() -> None:
    with pytest.raises(OSError) as raised:
        _platform.fsync_file(NEVER_OPEN_FD)
    assert raised.value.errno == errno.EBADF


if sys.platform != "win32":  # F_FULLFSYNC is an fcntl of POSIX systems (macOS's alone).

    def test_the_full_fsync_falls_back_to_fsync_where_the_file_system_lacks_it(
        tmp_path: Path,
    ) -> None:
        # Only macOS knows F_FULLFSYNC; elsewhere the kernel answers EINVAL, as a macOS file
        # system without it does, so the fallback runs here for real.
        with opened_new(tmp_path / "data") as fd:
            os.write(fd, b"a batch")
            _platform._fsync_past_drive_cache(fd)
        assert (tmp_path / "data").read_bytes() == b"a batch"

    def test_the_full_fsync_raises_what_is_not_a_missing_feature(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import fcntl

        def failing(fd: int, command: int) -> int:
            raise OSError(errno.EIO, "the drive failed")

        monkeypatch.setattr(fcntl, "fcntl", failing)
        with opened_new(tmp_path / "data") as fd, pytest.raises(OSError) as raised:
            _platform._fsync_past_drive_cache(fd)
        assert raised.value.errno == errno.EIO


def test_fsync_directory_accepts_a_directory_with_a_new_file(tmp_path: Path) -> None:
    (tmp_path / "journal").write_bytes(b"")
    _platform.fsync_directory(tmp_path)
    _platform.fsync_directory(str(tmp_path))


@pytest.mark.skipif(sys.platform == "win32", reason="a no-op on Windows")
def test_fsync_directory_refuses_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        _platform.fsync_directory(tmp_path / "missing")


def test_an_exclusive_lock_keeps_other_processes_from_any_lock(lock_file: Path) -> None:
    with opened(lock_file) as fd:
        assert _platform.try_lock_exclusive(fd)
        assert probe(lock_file, "try") is False
        assert probe(lock_file, "shared") is False
        _platform.unlock(fd)
        assert probe(lock_file, "try") is True


def test_shared_locks_admit_each_other_but_not_an_exclusive_one(lock_file: Path) -> None:
    with opened(lock_file) as fd:
        assert _platform.lock_shared_nonblocking(fd)
        assert probe(lock_file, "shared") is True
        assert probe(lock_file, "try") is False
        with held_by_another_process(lock_file, "hold_shared"):
            assert probe(lock_file, "shared") is True, "two shared holders are no bar"
            assert probe(lock_file, "try") is False
        _platform.unlock(fd)
    assert probe(lock_file, "try") is True


def test_two_opens_in_one_process_conflict(lock_file: Path) -> None:
    with opened(lock_file) as first, opened(lock_file) as second:
        assert _platform.try_lock_exclusive(first)
        assert not _platform.try_lock_exclusive(second)
        assert not _platform.lock_shared_nonblocking(second)
        _platform.unlock(first)
        assert _platform.try_lock_exclusive(second)
        _platform.unlock(second)


def test_lock_exclusive_waits_until_the_other_process_releases(lock_file: Path) -> None:
    taken = threading.Event()
    with held_by_another_process(lock_file, "hold_exclusive") as holder, opened(lock_file) as fd:

        def take() -> None:
            _platform.lock_exclusive(fd)
            taken.set()

        waiter = threading.Thread(target=take, daemon=True)
        waiter.start()
        assert not taken.wait(0.3), "taken while another process held it"
        assert holder.stdin is not None
        holder.stdin.close()
        assert taken.wait(WAIT_S)
        waiter.join(WAIT_S)
        assert probe(lock_file, "try") is False
        _platform.unlock(fd)


def test_a_lock_goes_with_the_process_that_held_it(lock_file: Path) -> None:
    with held_by_another_process(lock_file, "hold_exclusive") as holder:
        assert probe(lock_file, "try") is False
        holder.kill()
        holder.wait(WAIT_S)
    with opened(lock_file) as fd:
        # Windows frees the locks of a killed process soon after, not at once.
        deadline = time.monotonic() + WAIT_S
        while not _platform.try_lock_exclusive(fd):
            assert time.monotonic() < deadline, "the dead holder's lock stayed"
            time.sleep(0.05)
        _platform.unlock(fd)


def test_a_held_lock_leaves_the_file_readable_and_writable(lock_file: Path) -> None:
    lock_file.write_bytes(b"the journal")
    with held_by_another_process(lock_file, "hold_exclusive"), opened(lock_file) as fd:
        assert os.read(fd, 64) == b"the journal"
        os.lseek(fd, 0, os.SEEK_END)
        os.write(fd, b" grows")
    assert lock_file.read_bytes() == b"the journal grows"


def test_unlocking_what_holds_no_lock_is_no_error(lock_file: Path) -> None:
    with opened(lock_file) as fd:
        _platform.unlock(fd)
        assert _platform.try_lock_exclusive(fd)
        _platform.unlock(fd)
        _platform.unlock(fd)
