"""Restarting dhcpd and checking that it came back: supervise, command or none."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from typing import Protocol

from agent import process
from agent.config import Dhcpd
from agent.errors import CommandError, ServiceError
from agent.leases import LeaseSnapshot
from agent.validate import meaningful

log = logging.getLogger(__name__)

STOP_GRACE = 10.0  # seconds dhcpd gets to exit on SIGTERM before SIGKILL
OUTPUT_LINES = 200


class Service(Protocol):
    def restart(self) -> None:
        """Make dhcpd load the live tree; raise ServiceError if that fails outright."""

    def verify(self) -> None:
        """Wait health_timeout; raise ServiceError if dhcpd did not stay up."""

    def roll_back(self) -> str:
        """Restart dhcpd on the old tree after a failed start; say what was restored."""

    def stop(self) -> None: ...


class Supervisor:
    """dhcpd as the agent's own child in the foreground, logging to our pipe."""

    def __init__(self, dhcpd: Dhcpd, target: Path, state_dir: Path) -> None:
        self.dhcpd = dhcpd
        self.target = target
        self.pid_file = state_dir / "dhcpd.pid"
        self.leases = LeaseSnapshot(dhcpd.lease_file)
        self.output: deque[str] = deque(maxlen=OUTPUT_LINES)
        self.proc: subprocess.Popen[str] | None = None
        self.reader: threading.Thread | None = None

    def argv(self) -> list[str]:
        d = self.dhcpd
        config = str(self.target / d.config)
        files = ["-cf", config, "-lf", str(d.lease_file), "-pf", str(self.pid_file)]
        return [d.binary, "-f", "-d", *files, *d.args]

    def start(self) -> None:
        try:
            self._spawn()
        except OSError as err:
            # Not even spawned is a failed start like any other: the caller rolls back,
            # instead of leaving the new tree live and unrecorded with dhcpd down.
            where = f" ({err.filename})" if err.filename else ""
            raise ServiceError(f"cannot start dhcpd: {err.strerror}{where}") from err

    def _spawn(self) -> None:
        _ensure_lease_file(self.dhcpd.lease_file)
        self.output.clear()
        # cwd is the target: relative includes resolve there, as in validation.
        self.proc = subprocess.Popen(
            self.argv(),
            cwd=self.target,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,  # a Ctrl-C for the agent is not one for dhcpd
        )
        self.reader = threading.Thread(target=self._drain, args=(self.proc,), daemon=True)
        self.reader.start()
        log.info("started dhcpd, pid %d", self.proc.pid)

    def _drain(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.output.append(line.rstrip("\n"))

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            _terminate(proc)
        if self.reader is not None:
            # Its last lines belong to this dhcpd, not to the next one's output.
            self.reader.join(timeout=2)

    def restart(self) -> None:
        self.stop()
        self.leases.take()
        self.start()

    def roll_back(self) -> str:
        self.stop()
        try:
            restored = self.leases.put_back()
        except OSError as err:  # dhcpd serving again matters more than the old leases
            self.start()
            return f"the lease file could not be put back: {err.strerror}"
        self.start()
        return "the lease file dhcpd rewrote on the new config was put back" if restored else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def verify(self) -> None:
        proc = self.proc
        if proc is None:
            raise ServiceError("dhcpd is not running")
        try:
            code = proc.wait(self.dhcpd.health_timeout)
        except subprocess.TimeoutExpired:
            return
        if self.reader is not None:
            self.reader.join(timeout=2)  # dhcpd's last words may still be in the pipe
        said = "\n".join(meaningful(list(self.output))[-20:])
        within = f"{self.dhcpd.health_timeout:g} s"
        raise ServiceError(f"dhcpd exited with {code} within {within}:\n{said}")


class CommandService:
    """dhcpd managed by the system: restart_command, then health_command if given."""

    def __init__(self, dhcpd: Dhcpd) -> None:
        self.dhcpd = dhcpd

    def restart(self) -> None:
        try:
            process.run(self.dhcpd.restart_command, timeout=120)
        except CommandError as err:
            raise ServiceError(f"restart failed: {err.message}\n{_output(err)}") from err

    def verify(self) -> None:
        time.sleep(self.dhcpd.health_timeout)
        _health_check(self.dhcpd)

    def roll_back(self) -> str:
        self.restart()
        return ""

    def stop(self) -> None:
        """dhcpd belongs to the system, not to us."""


class NoRestart:
    """Files only: for a dhcpd restarted by other means, and for the demo."""

    def __init__(self, dhcpd: Dhcpd) -> None:
        self.dhcpd = dhcpd

    def restart(self) -> None:
        """Nothing to restart."""

    def verify(self) -> None:
        if self.dhcpd.health_command:
            time.sleep(self.dhcpd.health_timeout)
            _health_check(self.dhcpd)

    def roll_back(self) -> str:
        return ""

    def stop(self) -> None:
        """Nothing to stop."""


def for_config(dhcpd: Dhcpd, target: Path, state_dir: Path) -> Service:
    if dhcpd.restart == "supervise":
        return Supervisor(dhcpd, target, state_dir)
    if dhcpd.restart == "command":
        return CommandService(dhcpd)
    return NoRestart(dhcpd)


def _health_check(dhcpd: Dhcpd) -> None:
    if not dhcpd.health_command:
        return
    try:
        process.run(dhcpd.health_command, timeout=60)
    except CommandError as err:
        raise ServiceError(f"health check failed: {err.message}\n{_output(err)}") from err


def _terminate(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _output(err: CommandError) -> str:
    return "\n".join((err.stderr + err.stdout).strip().splitlines()[-20:])


def _ensure_lease_file(lease_file: Path) -> None:
    """dhcpd will not start without its lease file; create it empty, never touch one."""
    if not lease_file.exists():
        lease_file.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(lease_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        log.info("created the empty lease file %s", lease_file)
