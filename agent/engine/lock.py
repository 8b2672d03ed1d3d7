"""One reconcile at a time per state dir: an flock that says who holds it."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.engine.state import now
from agent.errors import LockBusy


@contextmanager
def hold(
    state_dir: Path, what: str, wait: bool = True, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the state dir's lock; with wait=False raise LockBusy naming the holder.

    The kernel drops an flock when its holder dies, so a crash never leaves it stuck.
    An OSError (a full or failing state dir) leaves the lock file empty and unheld.
    """
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state_dir / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if not _try_lock(fd):
            holder = _holder(fd)
            if not wait:
                raise LockBusy(f"another reconcile is running ({holder})")
            if on_wait:
                on_wait(holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        _say(fd, path, f"pid {os.getpid()}, {what}, since {now()}")
        try:
            yield
        finally:
            with contextlib.suppress(OSError):  # the note is for people; the flock is the lock
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the last descriptor releases the flock


def _say(fd: int, path: Path, note: str) -> None:
    """Write who holds the lock. Its one block is the first a reconcile asks of the state
    dir: a full disk fails the attempt here, before anything else is written."""
    data = note.encode()
    os.ftruncate(fd, 0)
    try:
        if os.pwrite(fd, data, 0) != len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    except OSError as err:
        os.ftruncate(fd, 0)  # no half a note
        raise OSError(err.errno, err.strerror, str(path)) from err


def _try_lock(fd: int, kind: int = fcntl.LOCK_EX) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(fd: int) -> str:
    said = os.pread(fd, 200, 0).decode(errors="replace").strip()
    return said or "holder unknown"


def busy(state_dir: Path) -> bool:
    """A reconcile holds the lock now (asked without taking it for long, writing nothing)."""
    try:
        fd = os.open(state_dir / "lock", os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        if _try_lock(fd, fcntl.LOCK_SH):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        return True
    finally:
        os.close(fd)
