"""A real `dhcp-gitops agent` process on loopback, as users run it.

Its own process, uvicorn on 127.0.0.1, its config in a file, webhooks signed
with lab.forge's SECRET. The tests start it from a node's config (tests/conftest.py's
start_agent), the benchmarks inside their Lab (bench/agentproc.py); both get
an AgentProcess.

    launch()        `dhcp-gitops agent --config FILE`, waited for until it answers
    AgentProcess    the running agent: its API (/status, /history, the GitHub
                    webhook), bounded waits on its status, memory and CPU, stop()
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx

from lab import LabError
from lab.forge import github_push
from lab.ports import LOOPBACK
from lab.proc import cpu_seconds, proc_status

EXE = str(Path(sys.executable).with_name("dhcp-gitops"))
TOKEN = "api-token-9a8b7c"  # noqa: S105 - a throwaway agent's bearer token, on loopback
START_TIMEOUT = 20.0  # seconds until a started agent answers /healthz
STOP_TIMEOUT = 30.0  # seconds a SIGTERMed agent gets before SIGKILL
REQUEST_TIMEOUT = 10.0  # seconds per HTTP request
POLL = 0.05  # seconds between two looks at /status

# How a process is started (argv, its log) and how it is ended: see launch().
Spawn = Callable[[Sequence[str], Path], "subprocess.Popen[bytes]"]
Stop = Callable[["subprocess.Popen[bytes]"], None]


@dataclass
class AgentProcess:
    proc: subprocess.Popen[bytes]
    url: str
    config: Path
    log: Path
    request_timeout: float = REQUEST_TIMEOUT
    poll: float = POLL
    stopper: Stop | None = None  # ends proc in stop(); None: SIGTERM, then SIGKILL
    client: httpx.Client = field(init=False)
    deliveries: int = 0

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=self.request_timeout)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @cached_property
    def state_dir(self) -> Path:
        """Its [deploy] state_dir, as its config file says."""
        tables = tomllib.loads(self.config.read_text())
        return Path(tables["deploy"]["state_dir"])

    @property
    def dhcpd_pid_file(self) -> Path:
        """The supervised dhcpd's -pf (the Supervisor keeps it in state_dir)."""
        return self.state_dir / "dhcpd.pid"

    # --- its API ---

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.client.get("/status").json()
        return doc

    def history(self, limit: int = 1000) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = self.client.get("/history", params={"limit": limit}).json()
        return docs

    def last_attempt(self) -> dict[str, Any]:
        attempt: dict[str, Any] = self.status()["last_attempt"] or {}
        return attempt

    def github_push(
        self, sha: str, branch: str = "main", client: httpx.Client | None = None
    ) -> httpx.Response:
        """GitHub's push webhook for sha, signed, with a delivery id of its own.

        client: another client to send it with (a benchmark's own connection).
        """
        self.deliveries += 1
        body, headers = github_push(sha, f"delivery-{self.deliveries}-{sha[:8]}", branch)
        return (client or self.client).post("/webhook/github", content=body, headers=headers)

    # --- waits ---

    def wait_for(
        self, condition: Callable[[dict[str, Any]], bool], timeout: float = 20
    ) -> dict[str, Any]:
        """Poll /status (bounded) until condition holds: that document.

        LabError if the agent exits first or time runs out (with the last document).
        """
        deadline = time.monotonic() + timeout
        while True:
            self.check_running()
            doc = self.status()
            if condition(doc):
                return doc
            if time.monotonic() > deadline:
                raise LabError(f"agent {self.url}: timed out; last status: {json.dumps(doc)}")
            time.sleep(self.poll)

    def wait_deployed(self, sha: str, timeout: float = 20) -> dict[str, Any]:
        """Until sha is recorded as deployed and the loop is idle again."""
        return self.wait_for(
            lambda d: d["deployed"] is not None and d["deployed"]["sha"] == sha
            and d["state"] == "idle", timeout,
        )  # fmt: skip

    def check_running(self) -> None:
        """LabError, with its output, if the agent has exited."""
        if self.proc.poll() is not None:
            raise LabError(f"the agent exited with {self.proc.returncode}:\n{self.output()}")

    # --- the process ---

    def memory(self) -> dict[str, int]:
        """VmRSS and VmHWM, in kB."""
        return proc_status(self.pid)

    def cpu(self) -> tuple[float, float]:
        """(own, own + waited-for children) CPU seconds."""
        return cpu_seconds(self.pid)

    def stop(self) -> int:
        """End it (SIGTERM, as systemd or docker stop would send; or stopper): its exit code."""
        self.client.close()
        if self.stopper is not None:
            self.stopper(self.proc)
        elif self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def output(self) -> str:
        """What it logged (stdout and stderr)."""
        return self.log.read_text(errors="replace")


def spawn(argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    """argv as a child of ours, stdout and stderr into log (overwritten)."""
    with log.open("wb") as out:
        return subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT)


def launch(
    config: Path,
    port: int,
    log: Path,
    wait: bool = True,
    *,
    start: Spawn = spawn,
    stopper: Stop | None = None,
    timeout: float = START_TIMEOUT,
    request_timeout: float = REQUEST_TIMEOUT,
    poll: float = POLL,
) -> AgentProcess:
    """`dhcp-gitops agent --config config`, listening on 127.0.0.1:port, its output in log.

    wait: until it answers /healthz (within timeout; LabError if it exits or
    does not). start and stopper: how its process is started and ended (a
    benchmark's Lab puts it in a session of its own). The caller stops it
    (AgentProcess.stop), also when it fails.
    """
    proc = start([EXE, "agent", "--config", str(config)], log)
    agent = AgentProcess(
        proc, f"http://{LOOPBACK}:{port}", config, log,
        request_timeout=request_timeout, poll=poll, stopper=stopper,
    )  # fmt: skip
    if wait:
        try:
            wait_until_up(agent, timeout)
        except BaseException:
            agent.stop()
            raise
    return agent


def wait_until_up(agent: AgentProcess, timeout: float = START_TIMEOUT) -> None:
    """Until agent answers /healthz (200 or 503: up, whatever its health)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        agent.check_running()
        with contextlib.suppress(httpx.TransportError):
            if agent.client.get("/healthz").status_code in (200, 503):
                return
        time.sleep(0.05)
    raise LabError(f"the agent did not answer within {timeout:g} s:\n{agent.output()}")
