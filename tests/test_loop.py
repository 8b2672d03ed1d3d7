"""agent.daemon.loop in-process: waiting, collapsing triggers, backoff, the poll's cheap check."""

from __future__ import annotations

import time

from agent.daemon.loop import JITTER, WATCH_EVERY, Loop
from lab.repo import ConfigRepo
from tests.conftest import NodeFactory


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
