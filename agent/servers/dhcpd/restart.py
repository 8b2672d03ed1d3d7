"""How a new dhcpd.conf goes live: dhcpd restarted (supervised, or by a command) or not at
all, then checked that it came back."""

from __future__ import annotations

import itertools
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Protocol

from agent import fault, process
from agent.config import Dhcpd
from agent.errors import CommandError, RestartError
from agent.servers.base import Health
from agent.servers.dhcpd import orphan
from agent.servers.dhcpd.leases import LeaseSnapshot
from agent.servers.dhcpd.orphan import STOP_GRACE, Adopted, Running
from agent.servers.dhcpd.output import Output
from agent.servers.dhcpd.sandbox import meaningful
from agent.servers.dhcpd.workdir import WORKING_DIRECTORY

log = logging.getLogger(__name__)


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

    def adopt(self) -> bool:
        """At agent start, the live tree the recorded one: watch the dhcpd a previous
        agent left running on it instead of restarting it; False if there is none."""

    def revive(self) -> str | None:
        """A dhcpd of ours that died between deploys starts again: what it last said;
        None when nothing had to be done."""

    def health(self) -> Health: ...

    def stop(self) -> None: ...

    def release(self) -> None:
        """The agent exits to be restarted: leave our dhcpd serving for the next one."""


class Supervisor:
    """dhcpd in the foreground, in a session of its own, writing to the output FIFO: the
    agent's own child, or one a previous agent left running and this one adopted."""

    def __init__(self, dhcpd: Dhcpd, target: Path, state_dir: Path) -> None:
        self.dhcpd = dhcpd
        self.target = target
        self.pid_file = state_dir / "dhcpd.pid"
        self.leases = LeaseSnapshot(dhcpd.lease_file)
        self.outlet = Output(state_dir / "dhcpd.output")
        self.output = self.outlet.lines  # the last lines dhcpd wrote, for messages
        self.proc: Running | None = None

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
        self._let_go()
        self._stop_stray()
        _ensure_lease_file(self.dhcpd.lease_file)
        self.outlet.open()
        self.outlet.forget()  # a stray's last words are logged, not quoted as the new one's
        # cwd is /, as Debian's service starts dhcpd and as validation runs dhcpd -t
        # (conf.WORKING_DIRECTORY): a relative include would mean the same file under
        # each, and the include check refuses it anyway.
        with self.outlet.ends() as (write, spare):
            self.proc = subprocess.Popen(
                self.argv(),
                cwd=WORKING_DIRECTORY,
                stdin=subprocess.DEVNULL,
                stdout=write,
                stderr=write,
                pass_fds=(spare,),  # output.py: dhcpd's writes never lack a reader
                start_new_session=True,  # a Ctrl-C for the agent is not one for dhcpd
            )
        log.info("started dhcpd, pid %d", self.proc.pid)

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            _terminate(proc)
        self._let_go()
        # Its last lines belong to this dhcpd, not to the next one's output.
        self.outlet.close()

    def _let_go(self) -> None:
        """Forget the dhcpd held (it has exited, or is stopped next by _stop_stray)."""
        proc, self.proc = self.proc, None
        if isinstance(proc, Adopted):
            proc.close()

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

    def adopt(self) -> bool:
        """Watch the dhcpd a previous agent left running, instead of restarting it.

        The caller asks only at agent start, and only when the live tree is the
        recorded one: a dhcpd of ours, started with the arguments we would give
        it, then serves exactly what a restart would, and restarting it would only
        interrupt DHCP (a crash loop of the agent would become a restart loop of
        dhcpd). When recovery undid an interrupted deploy it restarted dhcpd
        already: ours runs, and there is nothing to adopt.
        """
        if self.proc is not None or not (self.target / self.dhcpd.config).is_file():
            return False
        found = self._left_running()
        if found is None:
            return False
        self.outlet.open()  # its lines written while no agent read are logged now
        self.proc = found
        log.warning("adopted dhcpd pid %d, left running on the deployed tree by the "
                    "previous agent: not restarted", found.pid)  # fmt: skip
        return True

    def _left_running(self) -> Adopted | None:
        """The dhcpd our pid file names, if it is ours to adopt as it runs."""
        pid = orphan.pid_in(self.pid_file)
        found = None if pid is None else Adopted.open(pid)
        if found is None:
            return None
        why = self._not_adoptable(orphan.cmdline(found.pid), found.pid)
        # Still running after its command line was read: that line was its own, not
        # that of a process given the pid after it exited.
        if why is None and found.poll() is None:
            return found
        found.close()
        if why:
            log.warning("not adopting dhcpd pid %d: %s; it is restarted", found.pid, why)
        return None

    def _not_adoptable(self, cmdline: list[str], pid: int) -> str | None:
        """Why a dhcpd of ours may not be adopted ("" when it is not ours at all)."""
        if not self._runs_as_ours(cmdline):
            return ""
        if cmdline[1:] != self.argv()[1:]:
            return "it was started with other arguments than [dhcpd] gives now"
        if not self.outlet.written_by(pid):
            return f"its output does not go to {self.outlet.path}"
        return None

    def _stop_stray(self) -> None:
        """Stop a dhcpd that a previous agent left running and we do not adopt.

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
        pid = orphan.pid_in(self.pid_file)
        if pid is None or (self.alive() and self.proc is not None and self.proc.pid == pid):
            return  # no pid file, or it names the dhcpd we hold
        with orphan.pidfd(pid) as fd:  # pins the process: a reused pid is never signalled
            if fd is not None and self._runs_as_ours(orphan.cmdline(pid)):
                log.warning("stopping dhcpd pid %d, left running by a previous agent", pid)
                orphan.stop_by_pidfd(fd)
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

    def release(self) -> None:
        if self.proc is not None and self.alive():
            log.warning("leaving dhcpd pid %d running for the next agent to adopt", self.proc.pid)

    def revive(self) -> str | None:
        if self.proc is None or self.alive():
            return None  # never started (no live tree yet), or running
        self.outlet.drain()
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
        self.outlet.drain()  # it has exited: all it wrote is in the FIFO
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

    def adopt(self) -> bool:
        return False  # the system's dhcpd runs on whatever happens to the agent

    def revive(self) -> str | None:
        return None

    def health(self) -> Health:
        return Health(mode="command")

    def stop(self) -> None:
        """dhcpd belongs to the system, not to us."""

    def release(self) -> None:
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

    def adopt(self) -> bool:
        return False

    def revive(self) -> str | None:
        return None

    def health(self) -> Health:
        return Health(mode="none")

    def stop(self) -> None:
        """Nothing to stop."""

    def release(self) -> None:
        """Nothing to leave running."""


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


def _terminate(proc: Running) -> None:
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
