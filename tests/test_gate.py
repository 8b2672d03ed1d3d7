"""agent.daemon.gate: the rules of the rolling restart as a table, the gate against a
real HTTP peer that answers badly, and real agents whose peer answers garbage, is
stopped with SIGSTOP, or hangs in its restart."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from agent.config import Peer
from agent.daemon.gate import Decision, PairGate, decide
from agent.daemon.peer import PeerClient, View
from agent.engine.document import AgentStatus
from agent.errors import PeerError, PeerRefused
from lab.agent import AgentProcess
from lab.repo import ConfigRepo
from tests.conftest import StartAgent
from tests.fakepeer import OLD, SHA, Answer, FakePeer, peer_document

# --- the rules, as a table ------------------------------------------------------------


def peer(state: str = "idle", **fields: Any) -> View:
    return View(reachable=True, doc=AgentStatus.model_validate(peer_document(state, **fields)))


DOWN = View(reachable=False, error="http://192.0.2.2:8647/status: timed out")
GARBAGE = View(reachable=False, error="peer answers garbage: Input should be an object")


@pytest.mark.parametrize(
    ("rule", "role", "view", "down_for", "expected"),
    [
        (1, "standalone", DOWN, 0, Decision.GO),  # a lone server has nobody to wait for
        # 2: no answer blocks until unreachable_after
        (2, "primary", DOWN, 59.9, Decision.WAIT),
        (2, "primary", DOWN, 60, Decision.GO),
        (2, "secondary", DOWN, 10, Decision.WAIT),
        (2, "secondary", DOWN, 60, Decision.GO),
        (2, "primary", GARBAGE, 0, Decision.WAIT),  # garbage is no answer, exactly
        (2, "secondary", GARBAGE, 61, Decision.GO),
        # 3: a peer in the restarting part of a deploy is waited for, however long
        (3, "primary", peer("restarting"), 0, Decision.WAIT),
        (3, "primary", peer("restarting"), 999, Decision.WAIT),
        (3, "primary", peer("restarting", running=False), 999, Decision.WAIT),
        (3, "primary", peer("restarting", deployed=None), 0, Decision.WAIT),
        (3, "secondary", peer("restarting", deployed=SHA), 0, Decision.WAIT),
        (3, "primary", peer("publishing"), 0, Decision.WAIT),
        (3, "secondary", peer("publishing", deployed=SHA), 0, Decision.WAIT),
        # 4: the secondary never restarts onto what the primary could not run
        (4, "secondary", peer(last=(SHA, "rolled_back")), 0, Decision.REFUSE),
        (4, "secondary", peer(last=(SHA, "refused")), 0, Decision.REFUSE),
        (4, "secondary", peer(last=(SHA, "rolled_back"), running=False), 999, Decision.REFUSE),
        (4, "secondary", peer(last=(SHA, "failed")), 0, Decision.WAIT),
        (4, "secondary", peer(last=(OLD, "rolled_back"), deployed=SHA), 0, Decision.GO),
        (4, "primary", peer(last=(SHA, "rolled_back")), 0, Decision.GO),
        # 5: a secondary catching up on the commit we run goes first
        (5, "primary", peer("validating", working_on=OLD, saw_us_run=OLD), 0, Decision.WAIT),
        (5, "primary", peer("waiting for peer", working_on=OLD, saw_us_run=OLD), 0,
         Decision.WAIT),
        (5, "primary", peer("waiting for peer", working_on=SHA, saw_us_run=OLD), 0,
         Decision.GO),  # it is ahead of us: it waits for us
        (5, "primary", peer("failed", working_on=OLD, saw_us_run=OLD), 0, Decision.GO),
        # 6: a peer that never deployed serves nobody yet (a new pair)
        (6, "primary", peer(deployed=None, running=False), 0, Decision.GO),
        (6, "secondary", peer(deployed=None, running=False), 0, Decision.WAIT),
        # 7: a peer whose dhcpd is down counts as down
        (7, "primary", peer(running=False), 5, Decision.WAIT),
        (7, "primary", peer(running=False), 61, Decision.GO),
        (7, "secondary", peer(deployed=SHA, running=False), 5, Decision.WAIT),
        (7, "secondary", peer(deployed=SHA, running=False), 61, Decision.GO),
        # 8: healthy: the primary goes first, the secondary once the primary runs the commit
        (8, "primary", peer(), 0, Decision.GO),
        (8, "primary", peer(running=None), 0, Decision.GO),  # dhcpd run by the system
        (8, "secondary", peer(deployed=OLD), 0, Decision.WAIT),
        (8, "secondary", peer("validating", deployed=OLD), 0, Decision.WAIT),
        (8, "secondary", peer(deployed=SHA), 0, Decision.GO),
        (8, "secondary", peer("fetching", deployed=SHA), 0, Decision.GO),
    ],
)  # fmt: skip
def test_decide(rule: int, role: str, view: View, down_for: float, expected: Decision) -> None:
    ruling = decide(role, SHA, view, down_for, patience=60)
    assert ruling.decision is expected, ruling.why
    assert ruling.why


def test_what_the_gate_says_it_waits_for() -> None:
    assert decide("primary", SHA, GARBAGE, 5, 60).why == GARBAGE.error
    assert "for 61.0 s (unreachable_after 60)" in decide("primary", SHA, DOWN, 61, 60).why
    assert decide("primary", SHA, peer("restarting"), 0, 60).why == "it is restarting"
    refused = decide("secondary", SHA, peer(last=(SHA, "rolled_back")), 0, 60).why
    assert refused == f"the primary rolled back {SHA[:12]}"


# --- the gate against a real HTTP peer ------------------------------------------------


def gate_of(url: str, role: str = "primary", **cfg: Any) -> PairGate:
    settings = {"timeout": 0.3, "unreachable_after": 0.5, "wait": 5.0, **cfg}
    client = PeerClient(Peer(status_url=url, **settings))
    return PairGate(role, client, 0, lambda: None, threading.Event())


def test_a_garbage_peer_is_waited_for_like_a_dead_one(caplog: pytest.LogCaptureFixture) -> None:
    with FakePeer(Answer.of([peer_document()])) as fake:
        started = time.monotonic()
        gate_of(fake.url).before_restart(SHA)
        took = time.monotonic() - started
    assert took >= 0.5, "it went before unreachable_after"
    said = [r.getMessage() for r in caplog.records if r.name == "agent.daemon.gate"]
    waited = "waits for the peer: peer answers garbage: the document: Input should be"
    assert any(waited in s for s in said), said
    assert any("may restart now: peer answers garbage" in s for s in said), said
    assert len(said) == 2  # a line when the reason changes, not one per look


def test_a_restarting_peer_never_lets_us_go_even_after_a_slow_answer() -> None:
    """The attack of issue 13: the peer restarts for longer than unreachable_after, then
    one answer comes later than the timeout. Only [peer] wait ends the deploy, failed."""
    restarting = peer_document("restarting")
    with FakePeer(Answer.of(restarting)) as fake:

        def one_slow_answer() -> None:
            time.sleep(0.8)  # restarting for longer than unreachable_after (0.5)
            fake.serve(restarting, delay=0.5)  # slower than the timeout (0.3)
            time.sleep(0.4)
            fake.serve(restarting)

        threading.Thread(target=one_slow_answer, daemon=True).start()
        gate = gate_of(fake.url, wait=2.0)
        with pytest.raises(PeerError, match="waited 2 s for the peer: it is restarting"):
            gate.before_restart(SHA)
        assert gate.client.stuck() is not None


def test_the_secondary_refuses_what_the_primary_rolled_back() -> None:
    with FakePeer(Answer.of(peer_document(last=(SHA, "rolled_back")))) as fake:
        gate = gate_of(fake.url, role="secondary")
        with pytest.raises(PeerRefused, match="the primary rolled back aaaaaaaaaaaa"):
            gate.before_restart(SHA)


# --- real agents ----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _needs_dhcpd(dhcpd_binary: str) -> None:
    """Every deploy validates with the real dhcpd: fail, never skip, without it."""


PATIENCE = 2.0  # [peer] unreachable_after of the agents below
PEER = {"timeout": 0.5, "poll": 0.2, "unreachable_after": PATIENCE, "wait": 60}


def answers_fast(agent: AgentProcess) -> dict[str, Any]:
    """/status and /metrics both 200, each well within the peer's timeout; the document."""
    for path in ("/metrics", "/status"):
        started = time.monotonic()
        answer = agent.client.get(path)
        took = time.monotonic() - started
        assert answer.status_code == 200, (path, answer.text)
        assert took < PEER["timeout"], f"{path} took {took:.2f} s"
    doc: dict[str, Any] = answer.json()
    return doc


BAD_PEERS = {
    "a list": Answer.of([peer_document()]),
    "server_time not ISO": Answer.of({**peer_document(), "server_time": "now-ish"}),
    'dhcpd: "running"': Answer.of({**peer_document(), "dhcpd": "running"}),
    "truncated JSON": Answer(json.dumps(peer_document()).encode()[:200]),
    "huge": Answer.of({"pad": "x" * (5 * 1024 * 1024)}),
    "slower than timeout": Answer.of(peer_document(), delay=1.5),
    "a byte at a time": Answer.of(peer_document(), drip=0.05),
}


@pytest.mark.parametrize("name", list(BAD_PEERS))
def test_an_agent_whose_peer_answers_badly_stays_up_and_waits_it_out(
    start_agent: StartAgent, name: str
) -> None:
    """The peer watcher and the gate survive every bad shape; /status and /metrics stay
    200 and fast; the deploy waits unreachable_after, as for a dead peer, then goes."""
    with FakePeer(BAD_PEERS[name]) as fake:
        agent = start_agent(peer={"status_url": fake.url, **PEER})
        waiting = agent.wait_for(lambda d: d["state"] == "waiting for peer", timeout=10)
        doc = agent.wait_for(lambda d: d["peer"]["seen_at"] is not None, timeout=10)
        assert answers_fast(agent)["peer"]["reachable"] is False
        error = doc["peer"]["error"]
        if "slow" in name or "byte" in name:
            assert "no whole answer within 0.5 s" in error, error
        else:
            assert error.startswith("peer answers garbage: "), error
        assert waiting["live"]["stage_leftover"] is False  # the stage is the deploy's own
        deployed = agent.wait_for(lambda d: d["deployed"] is not None, timeout=20)
        assert deployed["last_attempt"]["timings"]["peer"] >= PATIENCE - 0.2
        answers_fast(agent)
        assert agent.proc.poll() is None
    assert "peer gate:" in agent.output() and error.split(": ")[0] in agent.output()


@contextmanager
def stopped(agent: AgentProcess, seconds: float | None = None) -> Iterator[None]:
    """The agent's process under SIGSTOP: the kernel still takes connections, nobody
    answers. Always continued again, so that the fixture can stop it."""
    agent.proc.send_signal(signal.SIGSTOP)
    try:
        yield
        if seconds is not None:
            time.sleep(seconds)
    finally:
        agent.proc.send_signal(signal.SIGCONT)


def new_commit(repo: ConfigRepo, n: int) -> str:
    repo.write("dhcp/hosts.conf", repo.read("dhcp/hosts.conf") + f"\n# change {n}\n")
    return repo.commit(f"Change {n}")


def test_a_peer_under_sigstop_is_waited_for_then_deployed_past(
    repo: ConfigRepo, start_agent: StartAgent
) -> None:
    secondary = start_agent("dhcp2", "secondary")
    secondary.wait_for(lambda d: d["deployed"] is not None)
    primary = start_agent(peer={"status_url": secondary.url + "/status", **PEER})
    primary.wait_for(lambda d: d["deployed"] is not None and d["peer"]["same_commit"])
    sha = new_commit(repo, 1)
    with stopped(secondary):
        primary.github_push(sha)
        doc = primary.wait_for(lambda d: d["state"] == "waiting for peer"
                               and not d["peer"]["reachable"], timeout=10)  # fmt: skip
        assert "no whole answer within 0.5 s" in doc["peer"]["error"]
        assert answers_fast(primary)["deployed"]["sha"] != sha
        assert "dhcp_gitops_peer_reachable 0.0" in primary.client.get("/metrics").text
        done = primary.wait_deployed(sha, timeout=20)
    assert done["last_attempt"]["timings"]["peer"] >= PATIENCE - 0.2
    assert primary.proc.poll() is None


def test_a_peer_stuck_restarting_is_shown_and_never_overridden(
    repo: ConfigRepo, start_agent: StartAgent, tmp_path: Any
) -> None:
    """The peer's restart hangs (longer than unreachable_after), and while it does, one
    of its answers comes too late (SIGSTOP for longer than the timeout): the primary
    must not restart until the peer's restart is over, and says the peer is stuck."""
    flag = tmp_path / "hang"
    hang = ["sh", "-c", f"if [ -e {flag} ]; then sleep 10; fi"]  # a restart that hangs
    secondary = start_agent("dhcp2", "secondary",
                            dhcpd={"restart": "command", "restart_command": hang})  # fmt: skip
    secondary.wait_for(lambda d: d["deployed"] is not None and d["state"] == "idle")
    primary = start_agent(peer={"status_url": secondary.url + "/status", **PEER})
    primary.wait_for(lambda d: d["deployed"] is not None and d["state"] == "idle")
    sha = new_commit(repo, 2)
    flag.touch()
    secondary.github_push(sha)
    secondary.wait_for(lambda d: d["state"] == "restarting", timeout=10)
    primary.github_push(sha)
    stuck = primary.wait_for(lambda d: d["peer"]["warning"] is not None, timeout=10)
    assert stuck["state"] == "waiting for peer" and stuck["peer"]["state"] == "restarting"
    assert "reported restarting for" in stuck["peer"]["warning"]
    with stopped(secondary, seconds=1.2):  # an answer slower than the timeout, or three
        pass
    restart_over = deployed = None
    deadline = time.monotonic() + 30
    while deployed is None and time.monotonic() < deadline:
        if restart_over is None and secondary.status()["state"] != "restarting":
            restart_over = time.monotonic()
        if answers_fast(primary)["deployed"]["sha"] == sha:
            deployed = time.monotonic()
        time.sleep(0.05)
    assert deployed is not None, "the primary never deployed after the peer's restart"
    assert restart_over is not None and restart_over <= deployed, (
        "the primary restarted while its peer was still restarting"
    )
    assert "has reported restarting for" in primary.output()
