"""How a new dhcpd.conf goes live: dhcpd restarted (supervised, or by a command) or not at
all, then checked that it came back."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import select
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from agent import fault, process
from agent.config import Dhcpd
from agent.errors import CommandError, RestartError
from agent.servers.base import Health
from agent.servers.dhcpd.leases import LeaseSnapshot
from agent.servers.dhcpd.sandbox import meaningful

log = logging.getLogger(__name__)

STOP_GRACE = 10.0  # seconds dhcpd gets to exit on SIGTERM before SIGKILL
OUTPUT_LINES = 200


class Restarter(Protocol):
    def restart(self) -> None:
        """Make dhcpd load the live tree; raise RestartError if that fails outright."""

    def verify(self) -> None:
        """Wait health_timeout; raise RestartError if dhcpd did not stay up."""

    def roll_back(self) -> str:
        """Restart dhcpd on the old tree after a failed start; say what was restored."""

    def accept(self) -> None:
        """The deploy is kept: forget what a roll_back would have restored."""

    def recover(self) -> None:
        """After a crash cut a deploy short: dhcpd runs the live tree (recovered) again."""

    def run_live(self) -> None:
        """At agent start: dhcpd runs the live tree, if the agent runs dhcpd itself."""

    def revive(self) -> str | None:
        """A dhcpd of ours that died between deploys starts again: what it last said;
        None when nothing had to be done."""

    def health(self) -> Health: ...

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
            raise RestartError(f"cannot start dhcpd: {err.strerror}{where}") from err

    def _spawn(self) -> None:
        self._stop_stray()
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
        fault.point("during-restart")  # the old dhcpd stopped, the new one not started
        self.start()
        fault.point("during-restart")  # the new dhcpd starting, rewriting its lease file

    def accept(self) -> None:
        self.leases.forget()

    def recover(self) -> None:
        """Stop the crashed agent's dhcpd, put back the lease file its cut-short restart
        may have let dhcpd rewrite, then start dhcpd on the live tree."""
        self.stop()
        self._stop_stray()
        if self.leases.put_back():
            log.warning("put back the lease file from before the interrupted restart")
        if (self.target / self.dhcpd.config).is_file():
            self.start()

    def _stop_stray(self) -> None:
        """Stop a dhcpd that an agent killed by SIGKILL left running.

        Our dhcpd runs in a session of its own, so it outlives a killed agent.
        Beside it a new one would not start ("There's already a DHCP server
        running"), and it would go on serving a tree nobody verifies. It is
        known by our pid file and by its command line: a dhcpd with our config,
        lease and pid files. (One killed before it wrote the pid file is not
        found: dhcpd writes it within milliseconds, an agent restarts in seconds.)

        Then the pid file goes: it names no live dhcpd of ours, and dhcpd refuses
        to start while it names any process at all, a zombie that no init reaps
        yet or an unrelated process that got the pid after a reboot.
        """
        pid = _pid_in(self.pid_file)
        if pid is None or (self.alive() and self.proc is not None and self.proc.pid == pid):
            return  # no pid file, or it names our own running child
        with _pidfd(pid) as fd:  # pins the process: a pid reused meanwhile is never signalled
            if fd is not None and self._runs_as_ours(_cmdline(pid)):
                log.warning("stopping dhcpd pid %d, left running by an agent that was killed",
                            pid)  # fmt: skip
                _stop_by_pidfd(fd)
        self.pid_file.unlink(missing_ok=True)

    def _runs_as_ours(self, cmdline: list[str]) -> bool:
        d = self.dhcpd
        ours = {("-cf", str(self.target / d.config)), ("-lf", str(d.lease_file)),
                ("-pf", str(self.pid_file))}  # fmt: skip
        named_dhcpd = bool(cmdline) and "dhcpd" in Path(cmdline[0]).name
        return named_dhcpd and ours <= set(itertools.pairwise(cmdline))

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

    def run_live(self) -> None:
        if (self.target / self.dhcpd.config).is_file() and not self.alive():
            self._start_logged()

    def revive(self) -> str | None:
        if self.proc is None or self.alive():
            return None  # never started (no live tree yet), or running
        said = "\n".join(list(self.output)[-5:])
        self._start_logged()
        return said

    def _start_logged(self) -> None:
        try:
            self.start()
        except RestartError as err:  # the next reconcile restarts it, and says why
            log.error("%s", err.message)

    def health(self) -> Health:
        pid = self.proc.pid if self.proc is not None and self.alive() else None
        return Health(mode="supervise", running=self.alive(), pid=pid)

    def verify(self) -> None:
        proc = self.proc
        if proc is None:
            raise RestartError("dhcpd is not running")
        try:
            code = proc.wait(self.dhcpd.health_timeout)
        except subprocess.TimeoutExpired:
            return
        if self.reader is not None:
            self.reader.join(timeout=2)  # dhcpd's last words may still be in the pipe
        said = "\n".join(meaningful(list(self.output))[-20:])
        within = f"{self.dhcpd.health_timeout:g} s"
        raise RestartError(f"dhcpd exited with {code} within {within}:\n{said}")


class CommandRestart:
    """dhcpd managed by the system: restart_command, then health_command if given."""

    def __init__(self, dhcpd: Dhcpd) -> None:
        self.dhcpd = dhcpd

    def restart(self) -> None:
        try:
            process.run(self.dhcpd.restart_command, timeout=120)
        except CommandError as err:
            raise RestartError(f"restart failed: {err.message}\n{_output(err)}") from err

    def verify(self) -> None:
        time.sleep(self.dhcpd.health_timeout)
        _health_check(self.dhcpd)

    def roll_back(self) -> str:
        self.restart()
        return ""

    def accept(self) -> None:
        """Nothing kept for a rollback: the system's dhcpd keeps its own lease file."""

    def recover(self) -> None:
        """The system's dhcpd may run the tree the crash left half deployed: restart it."""
        self.restart()

    def run_live(self) -> None:
        """dhcpd is not ours to start."""

    def revive(self) -> str | None:
        return None

    def health(self) -> Health:
        return Health(mode="command")

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

    def accept(self) -> None:
        """Nothing kept."""

    def recover(self) -> None:
        """Nothing to restart."""

    def run_live(self) -> None:
        """dhcpd is not ours to start."""

    def revive(self) -> str | None:
        return None

    def health(self) -> Health:
        return Health(mode="none")

    def stop(self) -> None:
        """Nothing to stop."""


def restarter_for(dhcpd: Dhcpd, target: Path, state_dir: Path) -> Restarter:
    if dhcpd.restart == "supervise":
        return Supervisor(dhcpd, target, state_dir)
    if dhcpd.restart == "command":
        return CommandRestart(dhcpd)
    return NoRestart(dhcpd)


def _health_check(dhcpd: Dhcpd) -> None:
    if not dhcpd.health_command:
        return
    try:
        process.run(dhcpd.health_command, timeout=60)
    except CommandError as err:
        raise RestartError(f"health check failed: {err.message}\n{_output(err)}") from err


def _terminate(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _pid_in(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text(encoding="ascii").strip())
    except (FileNotFoundError, ValueError):
        return None


def _cmdline(pid: int) -> list[str]:
    """The process's argv; empty once it is gone (or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0")[:-1]]


@contextlib.contextmanager
def _pidfd(pid: int) -> Iterator[int | None]:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


def _stop_by_pidfd(fd: int) -> None:
    """SIGTERM, STOP_GRACE seconds, then SIGKILL: the process is not our child, so its
    exit is watched through the pidfd (readable once it has exited)."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, STOP_GRACE)):
        try:
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            return
        poll = select.poll()  # not select(): a descriptor may be numbered past FD_SETSIZE
        poll.register(fd, select.POLLIN)
        if poll.poll(wait * 1000):
            return
    log.error("dhcpd (pidfd %d) survived SIGKILL for %g s", fd, STOP_GRACE)


def _output(err: CommandError) -> str:
    return "\n".join((err.stderr + err.stdout).strip().splitlines()[-20:])


def _ensure_lease_file(lease_file: Path) -> None:
    """dhcpd will not start without its lease file; create it empty, never touch one."""
    if not lease_file.exists():
        lease_file.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(lease_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        log.info("created the empty lease file %s", lease_file)
