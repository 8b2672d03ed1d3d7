"""How a new kea-dhcp4.conf goes live: reloaded over the control socket, kea-dhcp4
restarted (supervised, or by a command), or not at all; then checked it answers.

reload keeps Kea running: `config-test` on the live tree's JSON, then
`config-reload`, which makes Kea read its -c file again. A Kea whose reload
fails keeps serving its previous config; the engine then exchanges the old
tree back and roll_back() reloads that, so file and server agree again.
"""

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

from agent import process, tree
from agent.config import Kea
from agent.errors import CommandError, RestartError
from agent.servers.base import Health
from agent.servers.kea import control, jsonc

log = logging.getLogger(__name__)

STOP_GRACE = 10.0  # seconds kea-dhcp4 gets to exit on SIGTERM before SIGKILL
OUTPUT_LINES = 200


class Restarter(Protocol):
    def restart(self) -> None: ...
    def verify(self) -> None: ...
    def roll_back(self) -> str: ...
    def recover(self) -> None: ...
    def run_live(self) -> None: ...
    def revive(self) -> str | None: ...
    def health(self) -> Health: ...
    def stop(self) -> None: ...


def live_config(kea: Kea, target: Path) -> object:
    """The live tree's config as Kea would read it: includes expanded, comments gone."""
    files = {rel: path.read_bytes() for rel, path in tree.files(target)}
    try:
        return jsonc.load(files, kea.config, str(target)).value
    except jsonc.ParseError as err:
        raise RestartError(f"the live {kea.config} does not parse: {err.problem}") from err


def answers(kea: Kea) -> None:
    """RestartError unless Kea answers status-get on its control socket."""
    control.command(kea.control_socket, "status-get", timeout=5.0)


class Reload:
    """A Kea run by the system, told over its control socket to read its config again."""

    def __init__(self, kea: Kea, target: Path) -> None:
        self.kea = kea
        self.target = target
        self.reloaded = False  # whether the last restart() got as far as config-reload

    def restart(self) -> None:
        self.reloaded = False
        control.command(self.kea.control_socket, "config-test", live_config(self.kea, self.target))
        self.reloaded = True  # from here Kea may hold part of the new config
        control.command(self.kea.control_socket, "config-reload")

    def verify(self) -> None:
        time.sleep(self.kea.health_timeout)
        answers(self.kea)

    def roll_back(self) -> str:
        if not self.reloaded:
            # Refused by config-test: Kea never left its running config, and its HA
            # relationship is not restarted for nothing.
            return "kea-dhcp4 kept running its config: config-test refused the new one"
        self.reloaded = False
        control.command(self.kea.control_socket, "config-reload")
        return "kea-dhcp4 reloaded the restored tree"

    def recover(self) -> None:
        """The crash may have cut a deploy short after the exchange: reload what is live."""
        control.command(self.kea.control_socket, "config-reload")

    def run_live(self) -> None:
        """Kea is the system's to start."""

    def revive(self) -> str | None:
        return None

    def health(self) -> Health:
        return Health(mode="reload")

    def stop(self) -> None:
        """Kea belongs to the system."""


class Supervisor:
    """kea-dhcp4 -c FILE as the agent's child, restarted on each deploy."""

    def __init__(self, kea: Kea, target: Path, state_dir: Path) -> None:
        self.kea = kea
        self.target = target
        self.state_dir = state_dir
        self.output: deque[str] = deque(maxlen=OUTPUT_LINES)
        self.proc: subprocess.Popen[str] | None = None

    def argv(self) -> list[str]:
        return [self.kea.binary, "-c", str(self.target / self.kea.config)]

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # Kea's pid and lock files go to the state folder, not /run/kea: beside a
        # system Kea, ours would otherwise refuse to start.
        env = {
            **os.environ,
            "KEA_PIDFILE_DIR": str(self.state_dir),
            "KEA_LOCKFILE_DIR": str(self.state_dir),
        }
        self.output.clear()
        try:
            self.proc = subprocess.Popen(
                self.argv(),
                cwd=self.target,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                start_new_session=True,
            )
        except OSError as err:
            raise RestartError(f"cannot start kea-dhcp4: {err.strerror}") from err
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()
        log.info("started kea-dhcp4, pid %d", self.proc.pid)

    def _drain(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.output.append(line.rstrip("\n"))

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def verify(self) -> None:
        proc = self.proc
        if proc is None:
            raise RestartError("kea-dhcp4 is not running")
        try:
            code = proc.wait(self.kea.health_timeout)
        except subprocess.TimeoutExpired:
            answers(self.kea)
            return
        time.sleep(0.1)  # its last words may still be in the pipe
        said = "\n".join(list(self.output)[-20:])
        raise RestartError(
            f"kea-dhcp4 exited with {code} within {self.kea.health_timeout:g} s:\n{said}"
        )

    def roll_back(self) -> str:
        self.restart()
        return ""

    def recover(self) -> None:
        self.stop()
        if (self.target / self.kea.config).is_file():
            self.start()

    def run_live(self) -> None:
        if (self.target / self.kea.config).is_file() and not self.alive():
            self._start_logged()

    def revive(self) -> str | None:
        if self.proc is None or self.alive():
            return None
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


class CommandRestart:
    """Kea restarted by restart_command (systemctl), then asked status-get."""

    def __init__(self, kea: Kea) -> None:
        self.kea = kea

    def restart(self) -> None:
        try:
            process.run(self.kea.restart_command, timeout=120)
        except CommandError as err:
            raise RestartError(f"restart failed: {err.message}") from err

    def verify(self) -> None:
        time.sleep(self.kea.health_timeout)
        answers(self.kea)

    def roll_back(self) -> str:
        self.restart()
        return ""

    def recover(self) -> None:
        self.restart()

    def run_live(self) -> None:
        """Kea is the system's to start."""

    def revive(self) -> str | None:
        return None

    def health(self) -> Health:
        return Health(mode="command")

    def stop(self) -> None:
        """Kea belongs to the system."""


class NoRestart:
    """Files only: for a Kea reloaded by other means, and for tests of the files."""

    def restart(self) -> None:
        """Nothing to apply."""

    def verify(self) -> None:
        """Nothing to check."""

    def roll_back(self) -> str:
        return ""

    def recover(self) -> None:
        """Nothing to apply."""

    def run_live(self) -> None:
        """Nothing to start."""

    def revive(self) -> str | None:
        return None

    def health(self) -> Health:
        return Health(mode="none")

    def stop(self) -> None:
        """Nothing to stop."""


def restarter_for(kea: Kea, target: Path, state_dir: Path) -> Restarter:
    if kea.restart == "reload":
        return Reload(kea, target)
    if kea.restart == "supervise":
        return Supervisor(kea, target, state_dir)
    if kea.restart == "command":
        return CommandRestart(kea)
    return NoRestart()
