"""The agent's reconcile loop: one reconcile at a time, triggers collapsed, retries backed off.

Triggers (start-up, the poll timer, a webhook, POST /sync) only raise a flag;
the worker thread runs one reconcile for all the flags raised meanwhile, and
reconcile always fetches the branch head, so the newest commit wins and
nothing is queued twice. Retries and backoff live here, never in reconcile().
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from agent import logs
from agent.config import Result
from agent.daemon.gate import PairGate
from agent.daemon.peer import PeerClient
from agent.engine import lock, recovery, status
from agent.engine.reconcile import Node, reconcile
from agent.engine.state import Attempt, now
from agent.errors import DhcpGitopsError, StepError

log = logging.getLogger(__name__)

JITTER = 0.1  # poll intervals and backoffs vary by +-10% so that pairs do not align
WATCH_EVERY = 1.0  # seconds between checks that a supervised dhcpd still runs
TROUBLE_EVERY = 60.0  # seconds between log lines of a watcher that keeps failing

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
    # The last attempt, when the state dir could not take it (full, failing): what
    # /status shows until an attempt is recorded again.
    unrecorded: Attempt | None = None

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
        self._step = "reconcile"  # the step the running reconcile is at
        self._peer_trouble = logs.Throttle(log, TROUBLE_EVERY)
        self._dhcpd_trouble = logs.Throttle(log, TROUBLE_EVERY, logging.ERROR)
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
        """Until stop(): nothing that goes wrong in here ends the thread, since a loop
        that died while the process lives would never be restarted by anyone."""
        next_poll = self._next_poll()
        while not self._stopped.is_set():
            try:
                next_poll = self._serve_trigger(next_poll)
            except Exception:  # a bug of ours must not stop the deploys
                log.exception("the reconcile loop hit an error of its own; it goes on")
                self._stopped.wait(WATCH_EVERY)

    def _serve_trigger(self, next_poll: float) -> float:
        """Wait for the next trigger and serve it; the next poll time."""
        woke = self._wait(next_poll)
        if woke is None:
            return next_poll
        reason, check_first = woke
        if reason == "timer":
            next_poll = self._next_poll()
        if not check_first or self._remote_moved():
            self._reconcile(reason)
        return next_poll

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
            attempt = self._attempt()
            fields = {"sha": attempt.sha, "result": attempt.result, "step": attempt.step}
            log.log(LEVELS[attempt.result or "failed"], "%s", summary(attempt), extra=fields)
        progress.reconciles += 1
        status.refresh(self.node)  # the drift check /status shows; it never hashes itself
        # Before working_on is cleared: a push of this commit meanwhile is no new work.
        self._settled = attempt.sha if attempt.result != "failed" else None
        progress.phase, progress.working_on = "idle", None
        progress.last_log = captured.getvalue()
        if attempt.result == "failed":
            self._back_off()
        else:
            progress.failures, progress.retry_at = 0, None
        if self.after is not None:
            try:
                self.after(attempt, progress.last_log)
            except Exception as err:  # metrics and mail are no reason to stop
                log.error("after the attempt: %s", logs.one_line(err), exc_info=_debugging())

    def _attempt(self) -> Attempt:
        """One reconcile; whatever it raises is a failed attempt, recorded if it can be."""
        started = now()
        self._step = "reconcile"
        try:
            attempt = reconcile(self.node, on_step=self._on_step, pairing=self.gate)
        except Exception as err:  # any fault is a failed attempt, never a dead loop
            log.debug("reconcile raised", exc_info=True)
            attempt = self._failed(err, started)
            recorded = self._record_failure(attempt)
            self.progress.unrecorded = None if recorded else attempt
        else:
            self.progress.unrecorded = None
        return attempt

    def _failed(self, err: Exception, started: str) -> Attempt:
        step = err.step if isinstance(err, StepError) else self._step
        return Attempt(sha=self.progress.working_on, started_at=started, finished_at=now(),
                       result="failed", step=step, message=logs.one_line(err))  # fmt: skip

    def _record_failure(self, attempt: Attempt) -> bool:
        """What reconcile() could not record (its lock, its recovery or its records
        failed): into state.json and the history if the state dir lets us now."""
        store = self.node.store
        try:
            with lock.hold(store.dir, "recording a failed reconcile", wait=False):
                state = store.load()  # never rewritten from a state.json we cannot read
                state.last_attempt = attempt
                store.save(state)
                store.append_history(attempt, self.node.config.node.name)
        except Exception as err:  # noqa: BLE001 - then /status shows it from memory
            log.error("the failed attempt is not recorded either (/status shows it): %s",
                      logs.one_line(err))  # fmt: skip
            return False
        return True

    def _on_step(self, step: str, sha: str | None) -> None:
        self._step = step
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
        try:
            return self._moved()
        except Exception as err:  # noqa: BLE001 - a reconcile finds out, and records it
            log.warning("poll: %s", logs.one_line(err))
            return self.progress.retry_at is None  # a failing remote is the backoff's job

    def _moved(self) -> bool:
        state = self.node.store.load()
        head = self.node.mirror.remote_head()
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
            try:
                self.peer.look()
            except Exception as err:  # noqa: BLE001 - an answer of a shape nobody foresaw
                self._peer_trouble(f"peer: cannot read its /status: {logs.one_line(err)}")
            if self._stopped.wait(self.node.config.peer.poll):
                return

    # --- a supervised dhcpd -------------------------------------------------

    def _recover(self) -> None:
        """Before dhcpd starts: if the agent was killed mid-deploy, the tree it left
        live unrecorded must not be served, nor rewrite the lease file (recovery.py)."""
        try:
            with lock.hold(self.node.store.dir, "recovery at start-up"):
                recovery.recover(self.node)
        except Exception as err:  # noqa: BLE001 - the first reconcile tries again, and says
            log.error("recovery at start-up: %s", logs.one_line(err))

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
        try:
            self._revive()
        except Exception as err:  # noqa: BLE001 - looked at again in a second
            self._dhcpd_trouble(f"watching {self.node.server.name}: {logs.one_line(err)}")

    def _revive(self) -> None:
        """Bring back a supervised server that died between deploys (not during one)."""
        said = self.node.server.revive()
        if said is not None:
            log.error("%s exited unexpectedly; started it again. It said:\n%s",
                      self.node.server.name, said)  # fmt: skip
            self.progress.dhcpd_restarts += 1

    @property
    def is_running(self) -> bool:
        return self._thread.is_alive()


# --- the result, as the log says it ---------------------------------------------

LEVELS: dict[Result, int] = {
    "deployed": logging.INFO,
    "current": logging.INFO,
    "refused": logging.WARNING,  # the commit's fault: the live tree serves on
    "rolled_back": logging.ERROR,
    "failed": logging.ERROR,
}
LINE_LIMIT = 1000  # characters of a message in the one line (dhcpd's output can be long)


def summary(attempt: Attempt) -> str:
    """The one line the log gives an attempt's result: what happened to which commit."""
    commit = f" {attempt.sha[:12]}" if attempt.sha else ""
    why = _one_line(attempt.message)
    if attempt.result == "deployed":
        return f"deployed{commit} {json.dumps(attempt.subject, ensure_ascii=False)}"
    if attempt.result == "current":
        return f"current{commit}: nothing to do"
    if attempt.result == "refused":
        found = "; ".join(str(p) for p in attempt.problems)
        return f"refused{commit}: {_one_line(found) if found else why}"
    if attempt.result == "rolled_back":
        return f"rolled back{commit}: {why}"
    return f"failed{commit} at {attempt.step}: {why}"


def _one_line(text: str) -> str:
    flat = "; ".join(line.strip() for line in text.splitlines() if line.strip())
    return flat if len(flat) <= LINE_LIMIT else flat[: LINE_LIMIT - 1] + "…"


def _debugging() -> bool:
    return log.isEnabledFor(logging.DEBUG)


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
