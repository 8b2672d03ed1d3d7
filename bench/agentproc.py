"""A real `dhcp-gitops agent` process for the benchmarks, and the forge's side of it.

The agent runs as users run it: its own process, uvicorn on loopback, dhcpd
supervised (inside the box's namespace through the wrapper), webhooks signed
with the secret of its config.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.lab import BenchError, DhcpdBox, Lab, cpu_seconds, proc_status
from tests.conftest import toml_text
from tests.receivers import free_port

EXE = str(Path(sys.executable).with_name("dhcp-gitops"))
SECRET = "bench-webhook-secret"  # noqa: S105 - a throwaway agent's, on loopback
START_TIMEOUT = 60.0
HEALTH_TIMEOUT = 1.0  # seconds dhcpd must stay up; after "live", so no part of it

Tables = dict[str, dict[str, Any]]


def box_config(box: DhcpdBox, url: str, **sections: Mapping[str, Any]) -> Tables:
    """A standalone node deploying into box's target, its dhcpd supervised in box's namespace.

    Keyword sections are merged over these tables (e.g. source={"poll_interval": 10}).
    """
    tables: Tables = {
        "node": {"name": box.name, "role": "standalone"},
        "source": {"url": url, "branch": "main", "poll_interval": 0},
        "deploy": {"target": str(box.target), "state_dir": str(box.home / "state")},
        "dhcpd": {
            "restart": "supervise",
            "binary": str(box.wrapper),
            "args": ["eth0"],
            "lease_file": str(box.lease_file),
            "health_timeout": HEALTH_TIMEOUT,
        },
    }
    return merged(tables, sections)


def merged(tables: Tables, sections: Mapping[str, Mapping[str, Any]]) -> Tables:
    for name, keys in sections.items():
        tables.setdefault(name, {}).update(keys)
    return tables


@dataclass
class Agent:
    lab: Lab
    proc: Any  # subprocess.Popen[bytes]
    url: str
    state_dir: Path
    log: Path
    client: httpx.Client = field(init=False)
    deliveries: int = 0

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=30)

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    @property
    def dhcpd_pid_file(self) -> Path:
        """The Supervisor's -pf: live detection reads it as for every other pipeline."""
        return self.state_dir / "dhcpd.pid"

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.client.get("/status").json()
        return doc

    def history(self, limit: int = 1000) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = self.client.get("/history", params={"limit": limit}).json()
        return docs

    def push(self, sha: str, client: httpx.Client | None = None) -> httpx.Response:
        """GitHub's push webhook for sha, signed, with a delivery id of its own."""
        self.deliveries += 1
        body, headers = github_push(sha, f"bench-{self.pid}-{self.deliveries}")
        return (client or self.client).post("/webhook/github", content=body, headers=headers)

    def wait_for(self, condition: Callable[[dict[str, Any]], bool], timeout: float) -> float:
        """Poll /status (bounded) until condition holds; perf_counter() then."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"the agent exited with {self.proc.returncode}:\n{tail(self.log)}")
            if condition(self.status()):
                return time.perf_counter()
            time.sleep(0.02)
        raise BenchError(f"agent {self.url}: timed out; last status {json.dumps(self.status())}")

    def wait_recorded(self, sha: str, timeout: float = 120) -> float:
        """Until sha is recorded as deployed and the loop is idle again."""
        return self.wait_for(lambda d: _deployed_sha(d) == sha and d["state"] == "idle", timeout)

    def last_attempt(self) -> dict[str, Any]:
        attempt: dict[str, Any] = self.status()["last_attempt"] or {}
        return attempt

    def memory(self) -> dict[str, int]:
        return proc_status(self.pid)

    def cpu(self) -> tuple[float, float]:
        return cpu_seconds(self.pid)

    def stop(self) -> None:
        self.client.close()
        self.lab.stop(self.proc)


def tail(log: Path, lines: int = 20) -> str:
    """The end of a log, for an error message: the temp folder is gone afterwards."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _deployed_sha(doc: dict[str, Any]) -> str | None:
    deployed = doc.get("deployed")
    return deployed["sha"] if deployed else None


def github_push(sha: str, delivery: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"ref": "refs/heads/main", "after": sha, "deleted": False}).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": f"sha256={signature}",
        "Content-Type": "application/json",
    }
    return body, headers


def github_ping(delivery: str) -> tuple[bytes, dict[str, str]]:
    """A signed ping: the webhook's whole path (body, signature, parse) without a trigger."""
    body = b'{"zen": "Design for failure.", "hook_id": 1}'
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": f"sha256={signature}",
        "Content-Type": "application/json",
    }
    return body, headers


def start_agent(
    lab: Lab,
    home: Path,
    tables: Tables,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    wait: bool = True,
) -> Agent:
    """Write home/agent.toml, start the agent; by default wait until it has deployed the head.

    port: the one [http] listen takes (chosen here if None); the webhook secret is added.
    """
    secret = home / "webhook-secret"
    secret.write_text(SECRET + "\n")
    port = port or free_port()
    http = {"listen": f"127.0.0.1:{port}", "webhook_secret_file": str(secret)}
    config = home / "agent.toml"
    config.write_text(toml_text(merged(tables, {"http": http})))
    log = home / "agent.log"
    argv = [EXE, "agent", "--config", str(config)]
    proc = lab.start(argv, log, env={**os.environ, **(env or {})})
    state_dir = Path(tables["deploy"]["state_dir"])
    agent = Agent(lab, proc, f"http://127.0.0.1:{port}", state_dir, log)
    _wait_up(agent)
    if wait:
        agent.wait_for(lambda d: d["deployed"] is not None and d["state"] == "idle", START_TIMEOUT)
    return agent


def _wait_up(agent: Agent) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if agent.proc.poll() is not None:
            raise BenchError(f"the agent exited with {agent.proc.returncode}:\n{tail(agent.log)}")
        try:
            agent.client.get("/healthz")
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise BenchError(f"the agent did not answer within {START_TIMEOUT:g} s:\n{tail(agent.log)}")
