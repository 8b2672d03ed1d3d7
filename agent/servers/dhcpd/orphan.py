"""A dhcpd that is not our child: found by the pid file and its command line, watched
and stopped through a pidfd.

A supervised dhcpd runs in a session of its own, so it outlives an agent that
was killed or that handed it over on purpose (agent/servers/dhcpd/restart.py).
The next agent finds it here, and either adopts it (watches it as it would its
own child) or stops it. A pidfd pins the process: a pid reused meanwhile is
never signalled, and the exit of a process we cannot wait for (init reaps it)
is seen as the pidfd turning readable.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

STOP_GRACE = 10.0  # seconds dhcpd gets to exit on SIGTERM before SIGKILL
UNKNOWN_EXIT = -1  # an adopted dhcpd's exit status goes to its parent (init), not to us


class Running(Protocol):
    """What the Supervisor needs of a dhcpd: its own child (Popen) or an Adopted one."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


class Adopted:
    """A dhcpd a previous agent started, held as the Supervisor holds its own child."""

    def __init__(self, pid: int, fd: int) -> None:
        self.pid = pid
        self.fd = fd

    @classmethod
    def open(cls, pid: int) -> Adopted | None:
        """The process, pinned by a pidfd; None when it is gone."""
        try:
            return cls(pid, os.pidfd_open(pid))
        except ProcessLookupError:
            return None

    def poll(self) -> int | None:
        return UNKNOWN_EXIT if exited(self.fd, 0) else None

    def wait(self, timeout: float | None = None) -> int:
        if not exited(self.fd, timeout):
            raise subprocess.TimeoutExpired(f"dhcpd pid {self.pid}", timeout or 0)
        return UNKNOWN_EXIT

    def send_signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # it has exited already
            signal.pidfd_send_signal(self.fd, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def close(self) -> None:
        os.close(self.fd)


def exited(fd: int, timeout: float | None) -> bool:
    """Whether the pidfd's process has exited, waiting up to timeout seconds (None: for
    as long as it takes). Not select(): a descriptor may be numbered past FD_SETSIZE."""
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    return bool(poll.poll(None if timeout is None else timeout * 1000))


def pid_in(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text(encoding="ascii").strip())
    except (FileNotFoundError, ValueError):
        return None


def cmdline(pid: int) -> list[str]:
    """The process's argv; empty once it is gone (or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0")[:-1]]


@contextlib.contextmanager
def pidfd(pid: int) -> Iterator[int | None]:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


def stop_by_pidfd(fd: int) -> None:
    """SIGTERM, STOP_GRACE seconds, then SIGKILL, each exit watched on the pidfd."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            return
        if exited(fd, STOP_GRACE):
            return
    log.error("dhcpd (pidfd %d) survived SIGKILL for %g s", fd, STOP_GRACE)
