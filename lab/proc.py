"""Processes by id: pid files, what /proc says of a pid, bounded waits.

Nothing here signals a process found by name: the lab ends only what it
started (its Popen objects) or what runs in a namespace it made (netns).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path


def read_pid(pid_file: Path) -> int | None:
    """The pid a pid file names; None if it is missing or being written (empty)."""
    try:
        text = pid_file.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def running(pid: int) -> bool:
    """Alive and not a zombie (a dhcpd that exited at once must not count as live)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in kB."""
    fields: dict[str, int] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
    return fields


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(own, own + waited-for children) CPU seconds of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime) / ticks, (utime + stime + cutime + cstime) / ticks


def argv_of(pid: int) -> list[str]:
    """The process's arguments; none once it is gone (ESRCH while it exits)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0")[:-1]]


def cmdline(pid: int) -> str:
    return " ".join(argv_of(pid)) or "(gone)"


def dhcpd_pids_using(marker: str) -> list[int]:
    """dhcpd processes in any namespace whose command line mentions marker (a tmp path)."""
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    return [pid for pid in pids if _is_dhcpd_using(pid, marker)]


def _is_dhcpd_using(pid: int, marker: str) -> bool:
    """The program is dhcpd (not an agent whose tmp path has a test name with "dhcpd")."""
    argv = argv_of(pid)
    return bool(argv) and Path(argv[0]).name == "dhcpd" and any(marker in a for a in argv)


def wait_until(condition: Callable[[], bool], timeout: float = 2.0) -> bool:
    """Poll condition (bounded) until it holds; False if it never did in time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
