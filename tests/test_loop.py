"""agent.daemon.loop in-process: waiting, collapsing triggers, backoff, the poll's cheap check."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agent.daemon.loop import JITTER, WATCH_EVERY, Loop
from agent.engine.reconcile import reconcile
from lab.repo import ConfigRepo
from tests.conftest import NodeFactory
from tests.fakepeer import peer_document


def test_without_polling_the_worker_sleeps_until_the_next_dhcpd_check(
    make_node: NodeFactory,
) -> None:
    """poll_interval = 0 once made the wait time out at once: a busy loop."""
    loop = Loop(make_node(source={"poll_interval": 0}))
    now = time.monotonic()
    assert loop._sleep(now, next_poll=now) == WATCH_EVERY


def test_the_worker_wakes_for_the_nearest_of_poll_and_retry(make_node: NodeFactory) -> None:
    loop = Loop(make_node(source={"poll_interval": 60}))
    now = time.monotonic()
    assert loop._sleep(now, next_poll=now + 0.25) == 0.25
    loop.progress.retry_at = now + 0.5
    assert loop._sleep(now, next_poll=now + 30) == 0.5


def test_triggers_collapse_into_one_pending_run(make_node: NodeFactory) -> None:
    loop = Loop(make_node())
    assert loop.trigger("webhook") is True
    assert [loop.trigger(f"webhook {i}") for i in range(99)] == [False] * 99
    assert loop._wait(next_poll=time.monotonic() + 60) == ("webhook", False)


def test_a_trigger_that_only_checks_becomes_a_reconcile_when_a_full_one_joins(
    make_node: NodeFactory,
) -> None:
    loop = Loop(make_node())
    loop.trigger("redelivery", check_first=True)
    assert loop._wait(next_poll=time.monotonic() + 60) == ("redelivery", True)
    loop.trigger("redelivery", check_first=True)
    loop.trigger("new push")
    assert loop._wait(next_poll=time.monotonic() + 60) == ("redelivery", False)


def test_a_failed_reconcile_backs_off_exponentially_up_to_retry_max(
    repo: ConfigRepo, make_node: NodeFactory
) -> None:
    source = {"url": "file:///nonexistent/remote.git", "retry_min": 5, "retry_max": 20}
    loop = Loop(make_node(source=source))
    delays = []
    for _ in range(4):
        before = time.monotonic()
        loop._reconcile("test")
        assert loop.progress.phase == "failed" and loop.progress.retry_at is not None
        delays.append(loop.progress.retry_at - before)
    for n, delay in enumerate(delays):
        expected = min(20, 5 * 2**n)
        assert expected * (1 - JITTER) <= delay <= expected * (1 + JITTER) + 0.5


def test_the_poll_fetches_only_when_the_remote_moved(
    repo: ConfigRepo, make_node: NodeFactory
) -> None:
    loop = Loop(make_node())
    assert loop._remote_moved() is True  # nothing tried yet
    loop._reconcile("start-up")
    assert loop._remote_moved() is False
    repo.commit("New")
    assert loop._remote_moved() is True
    loop._reconcile("timer")
    target = loop.node.config.deploy.target
    (target / "hosts.conf").write_text("# drifted\n")
    assert loop._remote_moved() is True  # drift is repaired by the next reconcile too


# --- a loop that cannot die ---------------------------------------------------------


class Broken:
    """A pairing (agent.engine.reconcile.Pairing) with a bug: what no real peer can be
    made to do once the peer's answers are checked, and what a bug anywhere would do."""

    def before_restart(self, sha: str) -> None:
        raise TypeError("'NoneType' object is not subscriptable")

    def after_restart(self) -> None:
        pass


def wait_until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_an_error_of_any_kind_is_a_failed_attempt_and_the_loop_lives_on(
    repo: ConfigRepo, make_node: NodeFactory
) -> None:
    node = make_node(source={"poll_interval": 0, "retry_min": 0.05, "retry_max": 0.1})
    good = reconcile(node).sha
    repo.write("dhcp/hosts.conf", repo.read("dhcp/hosts.conf") + "# new\n")
    new = repo.commit("New")
    loop = Loop(node)
    loop.gate = Broken()  # type: ignore[assignment]
    loop.start()
    try:
        wait_until(lambda: loop.progress.failures >= 2)  # failed, and retried
        assert loop.is_running and loop.progress.phase in ("failed", "waiting for peer")
        last = node.store.load().last_attempt
        assert last is not None and (last.result, last.step, last.sha) == ("failed", "peer", new)
        assert last.message == "TypeError: 'NoneType' object is not subscriptable"
        assert [a.result for a in node.store.history()][-2:] == ["failed", "failed"]
        assert not node.workspace.stage.exists()  # dropped, as for any failure before publish
        state = node.store.load()
        assert state.deployed is not None and state.deployed.sha == good
        loop.gate = None  # the bug fixed: the next retry goes ahead
        wait_until(lambda: getattr(node.store.load().deployed, "sha", None) == new)
    finally:
        loop.stop()


def test_a_failure_the_state_dir_cannot_take_is_kept_in_memory(
    repo: ConfigRepo, make_node: NodeFactory
) -> None:
    """A state dir that refuses even the lock (here a folder where the lock file goes)."""
    node = make_node()
    node.store.dir.mkdir(parents=True)
    (node.store.dir / "lock").mkdir()
    loop = Loop(node)
    loop._reconcile("test")
    failure = loop.progress.unrecorded
    assert loop.progress.phase == "failed" and loop.progress.retry_at is not None
    assert failure is not None and (failure.result, failure.step) == ("failed", "lock")
    assert failure.message == f"Is a directory ({node.store.dir / 'lock'})"
    assert not node.store.state_file.exists()
    (node.store.dir / "lock").rmdir()
    loop._reconcile("retry")
    assert loop.progress.unrecorded is None and loop.progress.phase == "idle"
    assert node.store.load().last_attempt.result == "deployed"  # type: ignore[union-attr]


def test_a_state_file_it_cannot_read_is_neither_fatal_nor_overwritten(
    repo: ConfigRepo, make_node: NodeFactory
) -> None:
    node = make_node()
    node.store.dir.mkdir(parents=True)
    node.store.state_file.write_text("{ torn")
    loop = Loop(node)
    assert loop._remote_moved() is True  # the poll asks a reconcile to find out
    loop._reconcile("timer")
    failure = loop.progress.unrecorded
    assert failure is not None and failure.result == "failed" and "unreadable" in failure.message
    assert node.store.state_file.read_text() == "{ torn"  # never replaced by a guess


class _Peer(BaseHTTPRequestHandler):
    body = b"[]"  # JSON, but not a status document

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def odd_peer() -> Iterator[tuple[str, type[_Peer]]]:
    class Handler(_Peer):
        pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/status", Handler
    finally:
        server.shutdown()
        server.server_close()


def test_the_peer_watcher_outlives_an_answer_it_cannot_read(
    make_node: NodeFactory, odd_peer: tuple[str, type[_Peer]]
) -> None:
    url, handler = odd_peer
    loop = Loop(make_node(peer={"status_url": url, "poll": 0.05}))
    watcher = threading.Thread(target=loop._watch_peer, daemon=True)
    watcher.start()
    try:
        time.sleep(0.3)  # a few looks at an answer that is not a status document
        assert watcher.is_alive()
        handler.body = json.dumps(peer_document()).encode()
        wait_until(lambda: loop.peer.last.reachable)
    finally:
        loop._stopped.set()
        watcher.join(5)
