"""The agent's reconcile loop: one reconcile at a time, triggers collapsed, retries backed off.

Triggers (start-up, the poll timer, a webhook, POST /sync) only raise a flag;
the worker thread runs one reconcile for all the flags raised meanwhile, and
reconcile always fetches the branch head, so the newest commit wins and
nothing is queued twice. Retries and backoff live here, never in reconcile().
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from agent.daemon.gate import PairGate
from agent.daemon.peer import PeerClient
from agent.engine import lock, recovery, status
from agent.engine.reconcile import Node, reconcile
from agent.engine.state import Attempt
from agent.errors import DhcpGitopsError

log = logging.getLogger(__name__)

JITTER = 0.1  # poll intervals and backoffs vary by +-10% so that pairs do not align
WATCH_EVERY = 1.0  # seconds between checks that a supervised dhcpd still runs

PHASES = {
    "fetch": "fetching",
    "trust": "fetching",  # checking the fetched commit's signature and history
    "render": "rendering",
    "validate": "validating",
    "publish": "publishing",
    "restart": "restarting",
    "verify": "restarting",
    "rollback": "restarting",
    "record": "publishing",
    "peer": "waiting for peer",
}


@dataclass
class Progress:
    """What the loop is doing now, for /status and /metrics."""

    phase: str = "idle"
    working_on: str | None = None
    reconciles: int = 0
    failures: int = 0  # consecutive failed reconciles, for the backoff
    retry_at: float | None = None  # monotonic time of the next retry
    dhcpd_restarts: int = 0
    last_log: str = ""
    started: float = field(default_factory=time.monotonic)

    @property
    def busy(self) -> bool:
        """A reconcile is running: the live tree is between two records."""
        return self.phase not in ("idle", "failed")


AfterAttempt = Callable[[Attempt, str], None]


class Loop:
    def __init__(self, node: Node, after: AfterAttempt | None = None) -> None:
        self.node = node
        self.after = after
        self.poll = node.config.source.poll_interval > 0
        self.progress = Progress()
        self._wake = threading.Condition()
        self._wanted: str | None = None  # the reason of the pending trigger
        self._full = False  # a pending trigger wants a reconcile, not just a look at the remote
        self._settled: str | None = None  # the commit last tried, unless that attempt failed
        self._stopped = threading.Event()  # also wakes the peer watcher and a waiting gate
        self.peer = PeerClient(node.config.peer)
        self.gate = self._gate()
        self._thread = threading.Thread(target=self._run, name="reconcile", daemon=True)

    # --- triggers -------------------------------------------------------

    def trigger(self, reason: str, check_first: bool = False) -> bool:
        """Ask for a reconcile; False if one was already pending (collapsed into it).

        check_first: only if the remote moved or the live tree drifted, as on the poll
        timer; a trigger without it, collapsed into the same run, makes it a reconcile.
        """
        with self._wake:
            fresh = self._wanted is None
            self._wanted = self._wanted or reason
            self._full = self._full or not check_first
            self._wake.notify()
        return fresh

    def trigger_push(self, sha: str | None, reason: str) -> bool:
        """A forge's push of sha, as trigger().

        A push of the commit being deployed, or of the one last tried, is a
        redelivery or one more hook for the same push: the remote is asked first
        (ls-remote), so a storm of them costs no reconcile once that commit is
        live, while a branch that moved on is still fetched. A commit whose last
        attempt failed, or a push naming none, reconciles at once.
        """
        known = sha is not None and sha in (self.progress.working_on, self._settled)
        return self.trigger(reason, check_first=known)

    def start(self) -> None:
        self._recover()
        self._run_server()
        self.trigger("start-up")
        self._thread.start()
        if self.peer.configured:
            threading.Thread(target=self._watch_peer, name="peer", daemon=True).start()

    def stop(self, timeout: float = 60.0, hand_off: bool = False) -> None:
        """Let the running reconcile finish its steps, then stop a supervised dhcpd.

        hand_off: leave it running for the next agent to adopt (an agent restart).
        """
        with self._wake:
            self._stopped.set()
            self._wake.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if hand_off:
            self.node.server.release()
        else:
            self.node.server.stop()

    # --- the worker -------------------------------------------------------

    def _run(self) -> None:
        next_poll = self._next_poll()
        while True:
            woke = self._wait(next_poll)
            if woke is None:
                return
            reason, check_first = woke
            if reason == "timer":
                next_poll = self._next_poll()
            if check_first and not self._remote_moved():
                continue
            self._reconcile(reason)

    def _wait(self, next_poll: float) -> tuple[str, bool] | None:
        """The next trigger's reason (or "retry", "timer") and whether to look at the
        remote before reconciling; None when stopping."""
        with self._wake:
            while not self._stopped.is_set():
                if self._wanted:
                    woke = (self._wanted, not self._full)
                    self._wanted, self._full = None, False
                    return woke
                now = time.monotonic()
                if self.progress.retry_at is not None and now >= self.progress.retry_at:
                    self.progress.retry_at = None
                    return "retry", False
                if self.poll and now >= next_poll:
                    return "timer", True
                self._wake.wait(timeout=self._sleep(now, next_poll))
                self._watch_dhcpd()
            return None

    def _sleep(self, now: float, next_poll: float) -> float:
        """Until the next dhcpd check, poll or retry, whichever comes first."""
        deadlines = [now + WATCH_EVERY]
        if self.poll:
            deadlines.append(next_poll)
        if self.progress.retry_at is not None:
            deadlines.append(self.progress.retry_at)
        return max(0.0, min(deadlines) - now)

    def _reconcile(self, reason: str) -> None:
        log.info("reconcile (%s)", reason)
        progress = self.progress
        with _captured_log() as captured:
            try:
                attempt = reconcile(self.node, on_step=self._on_step, pairing=self.gate)
            except DhcpGitopsError as err:  # the state dir itself is unusable
                log.error("reconcile failed: %s", err.message)
                attempt = None
        progress.reconciles += 1
        # Before working_on is cleared: a push of this commit meanwhile is no new work.
        settled = attempt is not None and attempt.result != "failed"
        self._settled = attempt.sha if attempt is not None and settled else None
        progress.phase, progress.working_on = "idle", None
        progress.last_log = captured.getvalue()
        if attempt is None or attempt.result == "failed":
            self._back_off()
        else:
            progress.failures, progress.retry_at = 0, None
        if attempt is not None and self.after is not None:
            self.after(attempt, progress.last_log)

    def _on_step(self, step: str, sha: str | None) -> None:
        self.progress.phase = PHASES.get(step, step)
        self.progress.working_on = sha

    def _back_off(self) -> None:
        p = self.progress
        p.failures += 1
        source = self.node.config.source
        delay = min(source.retry_max, source.retry_min * 2 ** (p.failures - 1))
        p.retry_at = time.monotonic() + _jittered(delay)
        p.phase = "failed"
        log.warning("reconcile failed %d time(s) in a row; retry in %.1f s", p.failures, delay)

    def _next_poll(self) -> float:
        return time.monotonic() + _jittered(self.node.config.source.poll_interval)

    def _remote_moved(self) -> bool:
        """The cheap check before any fetch: ls-remote, and drift of the live tree."""
        state = self.node.store.load()
        try:
            head = self.node.mirror.remote_head()
        except DhcpGitopsError as err:
            log.warning("poll: %s", err.message)
            return self.progress.retry_at is None  # a failing remote is the backoff's job
        pinned = state.pin is not None and state.pin.while_head == head
        tried = state.last_attempt is not None and state.last_attempt.sha == head
        if not (tried or pinned):
            return True  # a commit we have not tried yet
        return bool(status.live(self.node, state)["drift"] != "none")  # repair drift

    # --- the peer -----------------------------------------------------------

    def _gate(self) -> PairGate | None:
        cfg = self.node.config
        if not self.peer.configured or cfg.node.role not in ("primary", "secondary"):
            return None
        server = self.node.server
        return PairGate(
            cfg.node.role, self.peer, server.pair_timeout, server.pair_normal, self._stopped
        )

    def _watch_peer(self) -> None:
        """Refresh /status's view of the peer; deploys look at it live through the gate."""
        while True:
            self.peer.look()
            if self._stopped.wait(self.node.config.peer.poll):
                return

    # --- a supervised dhcpd -------------------------------------------------

    def _recover(self) -> None:
        """Before dhcpd starts: if the agent was killed mid-deploy, the tree it left
        live unrecorded must not be served, nor rewrite the lease file (recovery.py)."""
        try:
            with lock.hold(self.node.store.dir, "recovery at start-up"):
                recovery.recover(self.node)
        except (DhcpGitopsError, OSError) as err:  # the first reconcile tries again, and says
            log.error("recovery at start-up: %s", err)

    def _run_server(self) -> None:
        """A supervised server a previous agent left running on the recorded tree is
        adopted, not restarted: an agent restart, or a crash loop, never interrupts DHCP
        (docs/design.md, invariant 8). After recovery: a deploy it undid restarted the
        server already, and a tree it left unrecorded is not the recorded one."""
        server = self.node.server
        if not (self._live_is_recorded() and server.adopt()):
            server.start()

    def _live_is_recorded(self) -> bool:
        try:
            state = self.node.store.load()
        except DhcpGitopsError as err:  # the first reconcile says so too
            log.error("%s", err.message)
            return False
        return bool(status.live(self.node, state)["drift"] == "none")

    def _watch_dhcpd(self) -> None:
        """Bring back a supervised server that died between deploys (not during one)."""
        said = self.node.server.revive()
        if said is not None:
            log.error("%s exited unexpectedly; started it again. It said:\n%s",
                      self.node.server.name, said)  # fmt: skip
            self.progress.dhcpd_restarts += 1

    @property
    def is_running(self) -> bool:
        return self._thread.is_alive()


def _jittered(seconds: float) -> float:
    return seconds * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311 - not for secrets


@contextlib.contextmanager
def _captured_log() -> Iterator[io.StringIO]:
    """The agent's log lines of this thread, for the notification's deploy log."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    thread = threading.get_ident()
    handler.addFilter(lambda record: record.thread == thread)
    root = logging.getLogger("agent")
    root.addHandler(handler)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
