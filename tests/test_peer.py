"""agent.daemon.peer: reading the peer's /status (every bad shape is no answer), the
clocks, and clock skew. The gate's rules on top of it: tests/test_gate.py."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest

from agent.config import Peer
from agent.daemon.peer import MAX_DOCUMENT, Clocks, PeerClient, View, report, skew_level, tick
from agent.engine.document import AgentStatus
from tests.fakepeer import Answer, FakePeer, peer_document, v1_document

TIMEOUT = 0.3


def client_of(url: str, **cfg: Any) -> PeerClient:
    return PeerClient(Peer(status_url=url, timeout=TIMEOUT, **cfg))


@pytest.mark.parametrize(
    ("skew", "level"),
    [(None, "unknown"), (0.2, "ok"), (-9.9, "ok"), (10, "warning"), (-59, "warning"),
     (60, "error"), (-120, "error")],
)  # fmt: skip
def test_skew_levels(skew: float | None, level: str) -> None:
    assert skew_level(skew, Peer()) == level


def test_the_client_measures_skew_and_how_long_the_peer_is_down() -> None:
    with FakePeer() as peer:
        doc = peer_document()
        doc["server_time_unix"] = time.time() + 75.0
        peer.serve(doc)
        client = client_of(peer.url)
        view = client.look()
    assert view.reachable and view.skew is not None and 74 < view.skew < 76
    assert skew_level(view.skew, client.cfg) == "error"
    assert client.down_for() == 0.0
    down = client_of("http://127.0.0.1:9/status")
    assert down.look().reachable is False
    time.sleep(0.05)
    assert down.down_for() > 0


# --- every version of the document reads ---------------------------------------------


def future_document() -> dict[str, Any]:
    """A newer agent's: a version we do not know, fields we do not know, at every level."""
    doc = peer_document()
    doc.update(schema_version=7, leases={"active": 12})
    doc["live"]["inode_count"] = 3
    doc["dhcpd"]["threads"] = 4
    doc["peer"]["latency_ms"] = 1.5
    doc["last_attempt"] = {**v1_document()["last_attempt"], "retries": 2}
    return doc


@pytest.mark.parametrize(
    "doc",
    [v1_document("primary"), v1_document("secondary_waiting"), peer_document(),
     future_document()],
    ids=["v1 primary", "v1 secondary waiting", "v1 changed", "a future version"],
)  # fmt: skip
def test_a_peer_of_another_version_answers(doc: dict[str, Any]) -> None:
    """During a rolling upgrade the two agents run different versions: a document without
    schema_version is version 1, unknown fields are ignored, later fields are optional."""
    with FakePeer(Answer.of(doc)) as peer:
        view = client_of(peer.url).look()
    assert view.reachable, view.error
    assert view.doc is not None and view.doc.schema_version == doc.get("schema_version", 1)
    assert view.deployed_sha == (doc["deployed"] or {}).get("sha")


def test_our_own_document_reads_back() -> None:
    ours = AgentStatus.model_validate(peer_document()).model_copy(update={"schema_version": 2})
    with FakePeer(Answer(ours.model_dump_json().encode())) as peer:
        view = client_of(peer.url).look()
    assert view.reachable and view.doc == ours


# --- a bad answer is no answer, and the client says why ------------------------------


def without(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != key}


def with_(doc: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**doc, **fields}


GOOD = peer_document()
BIG = {"pad": "x" * (MAX_DOCUMENT + 10)}
BAD_ANSWERS = {
    # the shapes an attack on the real agent found (issue 13)
    "a list (/history)": (Answer.of([GOOD["last_attempt"]]), "garbage", "Input should be"),
    "server_time not ISO": (Answer.of(with_(GOOD, server_time="yesterday")), "garbage",
                            "server_time: Value error, not an ISO 8601 time"),
    'dhcpd: "running"': (Answer.of(with_(GOOD, dhcpd="running")), "garbage",
                         "dhcpd: Input should be an object"),
    'only {"dhcpd": "running"}': (Answer.of({"dhcpd": "running"}), "garbage",
                                  "node: Field required"),
    "truncated JSON": (Answer(json.dumps(GOOD).encode()[:300]), "garbage", "Invalid JSON"),
    "huge, declared": (Answer.of(BIG), "garbage", "larger than 4 MiB"),
    "huge, undeclared": (Answer.of(BIG, length=False), "garbage", "larger than 4 MiB"),
    "slower than timeout": (Answer.of(GOOD, delay=TIMEOUT + 0.7), "unreachable",
                            f"no whole answer within {TIMEOUT:g} s"),
    "a byte at a time": (Answer.of(GOOD, drip=0.02), "unreachable",
                         f"no whole answer within {TIMEOUT:g} s"),
    # and their neighbours
    "HTTP 500": (Answer(b"Internal Server Error", code=500), "garbage", "HTTP 500"),
    "NaN for a time": (Answer(json.dumps(with_(GOOD, server_time_unix=math.nan)).encode()),
                       "garbage", "server_time_unix"),
    "a time without a zone": (Answer.of(with_(GOOD, server_time="2024-01-01T00:00:00")),
                              "garbage", "without a zone"),
    "no server_time_unix": (Answer.of(without(GOOD, "server_time_unix")), "garbage",
                            "server_time_unix: Field required"),
    "deeply nested": (Answer(b"[" * 10_000 + b"]" * 10_000), "garbage", "recursion limit"),
    "an unknown drift": (Answer.of(with_(GOOD, live={**GOOD["live"], "drift": "sideways"})),
                         "garbage", "live.drift"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BAD_ANSWERS))
def test_a_bad_answer_counts_as_no_answer(name: str) -> None:
    answer, kind, said = BAD_ANSWERS[name]
    with FakePeer(answer) as peer:
        client = client_of(peer.url)
        started = time.monotonic()
        view = client.look()
        took = time.monotonic() - started
        section = report(client, own_sha=None)
    assert took < TIMEOUT + 0.5, f"the look took {took:.2f} s"
    assert not view.reachable and view.doc is None and view.skew is None
    assert not view.healthy and view.deployed_sha is None and view.state is None
    assert said in str(view.error), view.error
    assert str(view.error).startswith("peer answers garbage: ") is (kind == "garbage")
    assert client.down_for() >= 0 and client.last is view
    assert section is not None and section.error == view.error and not section.reachable
    assert len(section.model_dump_json()) < 2000  # the why is short, and echoes nothing
    assert "xxxx" not in section.model_dump_json()


# --- the clocks ----------------------------------------------------------------------

ANSWERS = {
    "healthy": View(True, doc=AgentStatus.model_validate(peer_document())),
    "restarting": View(True, doc=AgentStatus.model_validate(peer_document("restarting"))),
    "dhcpd down": View(True, doc=AgentStatus.model_validate(peer_document(running=False))),
    "down, restarting": View(
        True, doc=AgentStatus.model_validate(peer_document("restarting", running=False))
    ),
    "none": View(False, error="timed out"),
}


@pytest.mark.parametrize(
    ("looks", "at", "down_for", "restarting_for"),
    [
        ([(0, "none"), (5, "none")], 5, 5, None),
        ([(0, "none")], 7, 7, None),  # the clock runs between looks
        ([(0, "none"), (10, "healthy")], 12, 0, None),
        ([(0, "none"), (10, "healthy"), (20, "none")], 25, 5, None),
        # the attack: restarting for long, then one slow answer
        ([(0, "restarting"), (100, "restarting"), (101, "none")], 102, 1, 102),
        ([(0, "restarting"), (101, "none"), (102, "restarting")], 103, 0, 103),
        # an answer "restarting" stops the down clock; no answer keeps the restart clock
        ([(0, "none"), (50, "restarting"), (55, "none")], 60, 5, 10),
        ([(0, "none"), (59, "restarting"), (60, "none"), (61, "none")], 61, 1, 2),
        ([(0, "restarting"), (10, "healthy")], 11, 0, None),
        # a peer whose dhcpd is down is down, unless it is restarting it
        ([(0, "dhcpd down"), (30, "dhcpd down")], 30, 30, None),
        ([(0, "dhcpd down"), (10, "down, restarting"), (20, "dhcpd down")], 25, 5, None),
        ([(0, "dhcpd down"), (10, "none"), (20, "dhcpd down")], 25, 25, None),
    ],
)  # fmt: skip
def test_the_clocks(
    looks: list[tuple[float, str]], at: float, down_for: float, restarting_for: float | None
) -> None:
    clocks = Clocks()
    for when, answer in looks:
        clocks = tick(clocks, ANSWERS[answer], when)
    assert clocks.down_for(at) == down_for
    assert clocks.restarting_for(at) == restarting_for


def test_a_peer_stuck_restarting_is_shown(caplog: pytest.LogCaptureFixture) -> None:
    with FakePeer(Answer.of(peer_document("restarting"))) as peer:
        client = client_of(peer.url, unreachable_after=0.3)
        client.look()
        assert client.stuck() is None
        time.sleep(0.35)
        for _ in range(3):
            client.look()
        section = report(client, own_sha=None)
        peer.serve(peer_document())
        client.look()
    assert section is not None and section.reachable and section.state == "restarting"
    assert section.warning is not None and "reported restarting for" in section.warning
    assert section.restarting_for_seconds is not None and section.restarting_for_seconds > 0.3
    assert section.down_for_seconds is None
    stuck = [r for r in caplog.records if "reported restarting for" in r.getMessage()]
    assert len(stuck) == 1 and stuck[0].levelname == "WARNING"  # once, not once per look
    assert client.stuck() is None and "answers again" in caplog.text
