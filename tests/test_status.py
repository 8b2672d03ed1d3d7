"""The status document: its model in the OpenAPI schema, the drift check it shows
(cached, never hashed per request), its text form with the pair and every error line,
the exit status of `dhcp-gitops status`, and /healthz and /sync without a loop."""

from __future__ import annotations

import io
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import BaseModel

from agent.daemon.loop import Loop
from agent.engine import status
from agent.engine.document import AgentStatus, Live, PeerSection, Status
from agent.status_text import print_status
from lab.agent import EXE, TOKEN, AgentProcess
from lab.ports import free_port
from lab.repo import ConfigRepo
from tests.conftest import NodeFactory, StartAgent
from tests.fakepeer import OLD, SHA, Answer, FakePeer, peer_document, v1_document
from webhook.app import Runtime, create_app
from webhook.credentials import Secrets
from webhook.metrics import Metrics


@pytest.fixture(autouse=True)
def _needs_dhcpd(dhcpd_binary: str) -> None:
    """Every deploy validates with the real dhcpd: fail, never skip, without it."""


def dhcp_gitops(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=60, check=False)


def new_commit(repo: ConfigRepo, n: int) -> str:
    repo.write("dhcp/hosts.conf", repo.read("dhcp/hosts.conf") + f"\n# change {n}\n")
    return repo.commit(f"Change {n}")


def idle(agent: AgentProcess) -> dict[str, Any]:
    return agent.wait_for(lambda d: d["deployed"] is not None and d["state"] == "idle")


# --- the model is the API's schema -----------------------------------------------------


def schema_fields(api: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    if "$ref" in schema:
        schema = api["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return set(schema.get("properties", {}))


def component(api: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = api["components"]["schemas"][name]
    return found


@pytest.mark.parametrize("model", [AgentStatus, Live, PeerSection])
def test_the_openapi_schema_of_status_declares_every_field(
    start_agent: StartAgent, model: type[BaseModel]
) -> None:
    agent = start_agent()
    api = agent.client.get("/openapi.json").json()
    answer = api["paths"]["/status"]["get"]["responses"]["200"]["content"]["application/json"]
    assert answer["schema"] == {"$ref": "#/components/schemas/AgentStatus"}
    assert schema_fields(api, component(api, model.__name__)) == set(model.model_fields)
    assert "description" in component(api, "Live")["properties"]["checked_at"]


def test_status_is_the_model_at_its_version(start_agent: StartAgent) -> None:
    agent = start_agent()
    raw = idle(agent)
    doc = AgentStatus.model_validate(raw)
    assert raw["schema_version"] == doc.schema_version == 2
    assert doc.live.checked_at is not None and doc.live.drift == "none"
    for old in v1_document("primary"), v1_document("secondary_waiting"):
        assert set(old) <= set(raw), "a field of version 1 went missing"
        assert set(old["live"]) <= set(raw["live"])
        # as version 1 wrote it: its readers take a missing `running` for running
        assert raw["dhcpd"] == old["dhcpd"] == {"mode": "none"}


# --- drift: checked on the poll and after each reconcile, never per request ----------


def test_status_shows_the_last_drift_check_and_never_hashes_per_request(
    repo: ConfigRepo, start_agent: StartAgent
) -> None:
    """A hand edit of the live tree: /status keeps answering the loop's last check
    (with its time); the one-shot `status` checks now; the next reconcile checks again."""
    agent = start_agent()
    before = idle(agent)["live"]
    live = agent.config.parent / "etc" / "dhcp" / "hosts.conf"
    time.sleep(1.1)  # checked_at has seconds: the next check must read differently
    live.write_text(live.read_text() + "# by hand\n")
    for _ in range(20):
        assert agent.status()["live"] == before  # the check, not a fresh hash
    now = dhcp_gitops("status", "--config", str(agent.config))
    assert now.returncode == 1 and "DRIFT: changed outside dhcp-gitops: hosts.conf" in now.stdout
    assert "dhcp_gitops_drift 0.0" in agent.client.get("/metrics").text
    agent.client.post("/sync", headers={"Authorization": f"Bearer {TOKEN}"})
    after = agent.wait_for(lambda d: d["reconciles"] > 1 and d["state"] == "idle")["live"]
    assert after["checked_at"] > before["checked_at"] and after["drift"] == "none"


def test_the_poll_checks_drift(repo: ConfigRepo, make_node: NodeFactory) -> None:
    """status.live (the loop's poll) is a check, kept for /status."""
    node = make_node()
    assert status.last_check(node).drift == "missing"
    node.workspace.target.mkdir()
    (node.workspace.target / "dhcpd.conf").write_text("# by hand\n")
    assert status.document(node, checked=status.last_check(node)).live.drift == "missing"
    assert status.live(node, node.store.load())["drift"] == "never_deployed"
    assert status.last_check(node).drift == "never_deployed"
    assert status.document(node, busy=True).live.drift == "deploying"


# --- the text form and the exit status ---------------------------------------------------


def rolled_back_pair_document() -> AgentStatus:
    doc = peer_document("idle", deployed=OLD)
    doc["pin"] = {"sha": OLD, "while_head": SHA}
    doc["last_attempt"] = {
        **v1_document()["last_attempt"], "sha": SHA, "result": "rolled_back", "step": "verify",
        "message": "dhcpd did not come back on the new config, so the previous tree is live "
                   "again and dhcpd runs on it.\ndhcpd said: no subnet declaration for eth0\n"
                   "exiting.",
        "problems": [
            {"file": "dhcpd.conf", "line": 12, "message": "unknown option", "source": "dhcp/a.conf",
             "context": ["  option foo 1;", "         ^"]},
            {"file": "hosts.conf", "line": 3, "message": "semicolon expected."},
        ],
    }  # fmt: skip
    doc["peer"] = {**doc["peer"], "reachable": False, "healthy": False, "state": None,
                   "error": "peer answers garbage: server_time: Value error, not an ISO 8601 "
                            "time", "down_for_seconds": 42.0}  # fmt: skip
    doc["failover"] = [
        {
            "peer": "dhcp-failover",
            "mine": "normal",
            "partner": "normal",
            "mine_since": "2024-05-01T10:00:00+00:00",
            "partner_since": None,
        }
    ]
    return AgentStatus.model_validate(doc)


def text_of(doc: Status) -> str:
    out = io.StringIO()
    print_status(doc, out)
    return out.getvalue()


def test_text_status_shows_the_pair_and_every_error_line() -> None:
    text = text_of(rolled_back_pair_document())
    for line in (
        "peer       NOT ANSWERING for 42 s: peer answers garbage: server_time: Value error",
        "failover   dhcp-failover: mine normal since 2024-05-01T10:00:00+00:00, partner normal",
        f"pinned     {OLD[:12]} by a rollback",
        f"last       rolled_back {SHA[:12]}",
        "step verify: dhcpd did not come back on the new config",
        "dhcpd said: no subnet declaration for eth0",
        "           exiting.",
        "dhcp/a.conf:12: unknown option",
        "             option foo 1;",
        "hosts.conf:3: semicolon expected.",
        "status     ATTENTION: the last attempt rolled back; the peer does not answer",
    ):
        assert line in text, f"{line!r} not in:\n{text}"


def test_text_status_of_a_reachable_peer_and_of_one_stuck_restarting() -> None:
    doc = peer_document()
    doc["peer"] = {**doc["peer"], "reachable": True, "state": "restarting", "same_commit": True,
                   "deployed_sha": OLD, "clock_skew_seconds": 0.25, "clock_skew": "ok",
                   "restarting_for_seconds": 300.0,
                   "warning": "the peer has reported restarting for 300 s: look at it"}  # fmt: skip
    text = text_of(AgentStatus.model_validate(doc))
    assert f"peer       restarting, runs {OLD[:12]} (same commit)" in text
    assert "clock skew +0.2 s (ok)" in text or "clock skew +0.3 s (ok)" in text
    assert "WARNING: the peer has reported restarting for 300 s" in text
    assert text.rstrip().endswith("ATTENTION: the peer is stuck restarting")


def test_text_status_while_waiting_for_the_peer(start_agent: StartAgent) -> None:
    """The stage of a deploy waiting for its peer is that deploy's, not a leftover."""
    with FakePeer(Answer.of(peer_document("restarting"))) as fake:
        agent = start_agent(peer={"status_url": fake.url, "timeout": 0.5, "poll": 0.2})
        doc = agent.wait_for(lambda d: d["state"] == "waiting for peer")
        assert doc["live"]["stage_leftover"] is False
        shown = dhcp_gitops("status", "--url", agent.url)
    assert "interrupted run" not in shown.stdout
    assert "waits for the peer before it touches the live tree" in shown.stdout
    assert "waiting for peer on" in shown.stdout and "peer       restarting" in shown.stdout


def test_the_exit_status_is_for_monitoring(repo: ConfigRepo, start_agent: StartAgent) -> None:
    agent = start_agent()
    idle(agent)
    healthy = dhcp_gitops("status", "--url", agent.url)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert healthy.stdout.rstrip().endswith("status     ok")
    assert dhcp_gitops("status", "--url", agent.url, "--json").returncode == 0
    repo.replace("dhcp/hosts.conf", "fixed-address 192.0.2.10;", "fixed-address 192.0.2.10")
    bad = repo.commit("Typo")
    agent.github_push(bad)
    agent.wait_for(lambda d: (d["last_attempt"] or {}).get("sha") == bad)
    refused = dhcp_gitops("status", "--url", agent.url)
    assert refused.returncode == 1 and "ATTENTION: the last attempt refused" in refused.stdout
    assert "dhcp/hosts.conf:6: semicolon expected." in refused.stdout
    assert dhcp_gitops("status", "--url", agent.url, "--json").returncode == 1
    assert dhcp_gitops("status", "--config", str(agent.config)).returncode == 1
    down = dhcp_gitops("status", "--url", f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 2 and "Connection refused" in down.stderr
    with FakePeer(Answer.of([1, 2])) as garbage:
        answer = dhcp_gitops("status", "--url", garbage.url)
    assert answer.returncode == 2 and "answers garbage" in answer.stderr
    assert "exit status, for monitoring" in dhcp_gitops("status", "--help").stdout


# --- /healthz and /sync while no loop runs -------------------------------------------


@pytest.fixture
def api_without_loop(make_node: NodeFactory) -> Iterator[httpx.Client]:
    """The real app on a real uvicorn (127.0.0.1), its reconcile loop never started."""
    loop = Loop(make_node())
    rt = Runtime(loop=loop, secrets=Secrets(token=TOKEN.encode()), metrics=Metrics(),
                 max_body=4096)  # fmt: skip
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(rt), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)


def test_healthz_and_sync_answer_503_while_no_loop_runs(api_without_loop: httpx.Client) -> None:
    health = api_without_loop.get("/healthz")
    assert health.status_code == 503
    assert health.json() == {"ok": False, "problems": ["the reconcile loop is not running"]}
    sync = api_without_loop.post("/sync", headers={"Authorization": f"Bearer {TOKEN}"})
    assert sync.status_code == 503 and "reconcile loop is not running" in sync.json()["detail"]
    assert api_without_loop.post("/sync").status_code == 401  # the token is still asked first
    assert api_without_loop.get("/status").status_code == 200
    assert api_without_loop.get("/metrics").status_code == 200
