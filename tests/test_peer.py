"""agent.daemon.peer: the rolling-restart decision and clock skew, as tables."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agent.config import Peer
from agent.daemon.gate import Decision, decide
from agent.daemon.peer import PeerClient, View, skew_level

SHA, OLD = "a" * 40, "b" * 40


def peer(state: str = "idle", deployed: str | None = OLD, running: bool = True,
         last: tuple[str, str] | None = None) -> View:  # fmt: skip
    doc: dict[str, Any] = {
        "state": state,
        "deployed": {"sha": deployed} if deployed else None,
        "dhcpd": {"mode": "supervise", "running": running},
        "last_attempt": {"sha": last[0], "result": last[1]} if last else None,
    }
    return View(reachable=True, doc=doc)


DOWN = View(reachable=False, error="connection refused")


@pytest.mark.parametrize(
    ("role", "view", "blocked_for", "expected"),
    [
        # the primary goes first, but never while the secondary restarts
        ("primary", peer(), 0, Decision.GO),
        ("primary", peer(deployed=None, running=False), 0, Decision.GO),  # a new pair
        ("secondary", peer(deployed=None, running=False), 0, Decision.WAIT),
        ("primary", peer(state="restarting"), 0, Decision.WAIT),
        ("primary", peer(state="restarting"), 999, Decision.WAIT),  # it is alive: wait
        # the secondary waits for the primary to run the commit, healthy
        ("secondary", peer(deployed=OLD), 0, Decision.WAIT),
        ("secondary", peer(state="validating", deployed=OLD), 0, Decision.WAIT),
        ("secondary", peer(deployed=SHA), 0, Decision.GO),
        ("secondary", peer(state="restarting", deployed=SHA), 0, Decision.WAIT),
        # ... and never restarts onto what the primary could not run
        ("secondary", peer(last=(SHA, "rolled_back")), 0, Decision.REFUSE),
        ("secondary", peer(last=(SHA, "refused")), 0, Decision.REFUSE),
        ("secondary", peer(last=(SHA, "failed")), 0, Decision.WAIT),
        # a peer down or unhealthy blocks only until unreachable_after
        ("secondary", DOWN, 10, Decision.WAIT),
        ("secondary", DOWN, 60, Decision.GO),
        ("primary", DOWN, 59.9, Decision.WAIT),
        ("primary", peer(running=False), 5, Decision.WAIT),
        ("primary", peer(running=False), 61, Decision.GO),
        ("secondary", peer(deployed=SHA, running=False), 61, Decision.GO),
        # a lone server has nobody to wait for
        ("standalone", DOWN, 0, Decision.GO),
    ],
)  # fmt: skip
def test_decide(role: str, view: View, blocked_for: float, expected: Decision) -> None:
    assert decide(role, SHA, view, blocked_for, patience=60) is expected


@pytest.mark.parametrize(
    ("skew", "level"),
    [(None, "unknown"), (0.2, "ok"), (-9.9, "ok"), (10, "warning"), (-59, "warning"),
     (60, "error"), (-120, "error")],
)  # fmt: skip
def test_skew_levels(skew: float | None, level: str) -> None:
    assert skew_level(skew, Peer()) == level


class _Status(BaseHTTPRequestHandler):
    offset = 0.0

    def do_GET(self) -> None:
        body = json.dumps({"state": "idle", "server_time_unix": time.time() + self.offset,
                           "dhcpd": {"running": True}}).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_peer_status() -> Iterator[tuple[str, type[_Status]]]:
    """A real HTTP server on loopback answering like a peer agent whose clock is off."""

    class Handler(_Status):
        pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/status", Handler
    finally:
        server.shutdown()
        server.server_close()


def test_the_client_measures_skew_and_how_long_the_peer_is_down(
    fake_peer_status: tuple[str, type[_Status]],
) -> None:
    url, handler = fake_peer_status
    handler.offset = 75.0
    client = PeerClient(Peer(status_url=url))
    view = client.look()
    assert view.reachable and view.skew is not None and 74 < view.skew < 76
    assert skew_level(view.skew, client.cfg) == "error"
    assert client.blocked_for() == 0.0
    down = PeerClient(Peer(status_url="http://127.0.0.1:9/status", timeout=1.0))
    assert down.look().reachable is False
    time.sleep(0.05)
    assert down.blocked_for() > 0
