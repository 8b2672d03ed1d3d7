"""A real `dhcp-gitops agent` process on loopback, for the service tests."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import NodeFactory
from tests.receivers import free_port

EXE = str(Path(sys.executable).with_name("dhcp-gitops"))
SECRET = "webhook-secret-6f1e2d"
TOKEN = "api-token-9a8b7c"
START_TIMEOUT = 20.0


def github_signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def push_payload(sha: str, branch: str = "main") -> bytes:
    return json.dumps({"ref": f"refs/heads/{branch}", "after": sha, "deleted": False}).encode()


def hexmac(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# provider -> (the header proving the secret, its value for a body and a secret)
SIGNERS: dict[str, tuple[str, Callable[[bytes, str], str]]] = {
    "github": ("X-Hub-Signature-256", lambda body, secret: "sha256=" + hexmac(body, secret)),
    "gitea": ("X-Gitea-Signature", hexmac),
    "forgejo": ("X-Forgejo-Signature", hexmac),
    "gitlab": ("X-Gitlab-Token", lambda body, secret: secret),
    "bitbucket": ("X-Hub-Signature", lambda body, secret: "sha256=" + hexmac(body, secret)),
    "generic": ("X-Signature", hexmac),
}
# provider -> the header and value of a push event (generic: every delivery is one)
PUSH_EVENTS = {
    "github": ("X-GitHub-Event", "push"),
    "gitea": ("X-Gitea-Event", "push"),
    "forgejo": ("X-Forgejo-Event", "push"),
    "gitlab": ("X-Gitlab-Event", "Push Hook"),
    "bitbucket": ("X-Event-Key", "repo:push"),
}


def signed_headers(provider: str, body: bytes, secret: str = SECRET) -> dict[str, str]:
    """The header that proves `secret` to `provider`'s check, for this body."""
    header, sign = SIGNERS[provider]
    return {header: sign(body, secret)}


@dataclass
class AgentProcess:
    proc: subprocess.Popen[str]
    url: str
    config: Path
    log: Path
    client: httpx.Client = field(init=False)
    deliveries: int = 0

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.client.get("/status").json()
        return doc

    def github_push(self, sha: str, branch: str = "main") -> httpx.Response:
        self.deliveries += 1
        body = push_payload(sha, branch)
        headers = {
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": f"delivery-{self.deliveries}-{sha[:8]}",
            "X-Hub-Signature-256": github_signature(body),
            "Content-Type": "application/json",
        }
        return self.client.post("/webhook/github", content=body, headers=headers)

    def wait_for(
        self, condition: Callable[[dict[str, Any]], bool], timeout: float = 20
    ) -> dict[str, Any]:
        """Poll /status (bounded) until condition holds; fail with the last document."""
        deadline = time.monotonic() + timeout
        doc = self.status()
        while not condition(doc):
            if time.monotonic() > deadline:
                pytest.fail(f"timed out; last status: {json.dumps(doc, indent=1)}")
            time.sleep(0.05)
            doc = self.status()
        return doc

    def wait_deployed(self, sha: str, timeout: float = 20) -> dict[str, Any]:
        return self.wait_for(
            lambda d: d["deployed"] is not None and d["deployed"]["sha"] == sha
            and d["state"] == "idle", timeout,
        )  # fmt: skip

    def stop(self) -> int:
        """SIGTERM, as systemd or docker stop would send; the exit code."""
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def output(self) -> str:
        return self.log.read_text()


StartAgent = Callable[..., AgentProcess]


@pytest.fixture
def start_agent(tmp_path: Path, make_node: NodeFactory) -> Iterator[StartAgent]:
    """Start agents (subprocesses) for nodes made by make_node; all stopped afterwards."""
    started: list[AgentProcess] = []
    (tmp_path / "secret").write_text(SECRET + "\n")
    (tmp_path / "token").write_text(TOKEN + "\n")

    def start(
        name: str = "dhcp1", role: str = "primary", wait: bool = True, **sections: dict[str, Any]
    ) -> AgentProcess:
        port = free_port()
        http = {
            "listen": f"127.0.0.1:{port}",
            "webhook_secret_file": str(tmp_path / "secret"),
            "token_file": str(tmp_path / "token"),
            **sections.pop("http", {}),
        }
        source = {"poll_interval": 0, **sections.pop("source", {})}
        node = make_node(name, role, http=http, source=source, **sections)
        log = tmp_path / f"{name}-agent.log"
        agent = launch(node.config.file, port, log, wait=False)
        started.append(agent)
        if wait:
            _wait_until_up(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


def launch(config: Path, port: int, log: Path, wait: bool = True) -> AgentProcess:
    """`dhcp-gitops agent --config config`, listening on 127.0.0.1:port, its output in log.

    The caller stops it (AgentProcess.stop), also when the test fails.
    """
    with log.open("w") as out:
        proc = subprocess.Popen(
            [EXE, "agent", "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    agent = AgentProcess(proc, f"http://127.0.0.1:{port}", config, log)
    if wait:
        try:
            _wait_until_up(agent)
        except BaseException:
            agent.stop()
            raise
    return agent


def _wait_until_up(agent: AgentProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if agent.proc.poll() is not None:
            pytest.fail(f"the agent exited with {agent.proc.returncode}:\n{agent.output()}")
        try:
            if agent.client.get("/healthz").status_code in (200, 503):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"the agent did not answer within {START_TIMEOUT} s:\n{agent.output()}")
