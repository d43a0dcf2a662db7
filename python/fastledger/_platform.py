"""What durability needs of the operating system, in one place: flushing and file locks."""

from __future__ import annotations

import fcntl
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


def fsync_file(fd: int) -> None:
    """Flushes a file's data and size to stable storage."""
    if sys.platform == "darwin":
        # On macOS fsync leaves the data in the drive's cache; F_FULLFSYNC flushes that too.
        fcntl.fcntl(fd, getattr(fcntl, "F_FULLFSYNC", 51))
    else:
        os.fsync(fd)


def fsync_directory(path: str | os.PathLike[str]) -> None:
    """Makes the creation, rename or removal of files in `path` durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Whole-file advisory locks. They belong to the open file description, so two opens of one file
# in one process exclude each other as two processes do, and any thread may release them.


def lock_exclusive(fd: int) -> None:
    """Takes an exclusive lock, waiting for it."""
    fcntl.flock(fd, fcntl.LOCK_EX)


def try_lock_exclusive(fd: int) -> bool:
    """Takes an exclusive lock if no one holds one; whether it did."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def lock_shared(fd: int) -> None:
    """Takes a shared lock, waiting while someone holds an exclusive one."""
    fcntl.flock(fd, fcntl.LOCK_SH)


def lock_shared_nonblocking(fd: int) -> bool:
    """Takes a shared lock if no one holds an exclusive one; whether it did."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
