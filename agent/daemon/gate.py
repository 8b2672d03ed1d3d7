"""The peer gate: when this server of a pair may restart onto a commit.

Invariant: our deploys never have both dhcpds down at once. The primary goes
first; the secondary follows once the primary runs the commit; neither restarts
while the other is in the part of a deploy that restarts. `decide` is a pure
function of the peer's last answer and the down clock (agent/daemon/peer.py), its
rules read top to bottom, the first that matches wins:

    the peer                                          primary      secondary
    1  a pair role? (standalone: nobody to wait for)  -            -           GO
    2  no answer (unreachable, too slow, garbage)     down clock   down clock
    3  publishing or restarting                       WAIT         WAIT
    4  refused or rolled back this commit             -            REFUSE
    5  deploying the commit it saw us run (following) WAIT         -
    6  never deployed (a new pair)                    GO           -
    7  its dhcpd not running                          down clock   down clock
    8  healthy                                        GO           GO if it runs
                                                                   the commit,
                                                                   else WAIT

    down clock: GO once the peer has been down (no answer, or its dhcpd not
    running) for [peer] unreachable_after seconds, else WAIT. A dead peer is when
    a deploy is needed most.

Why each rule keeps the invariant:
  - 3: a peer in `restarting` answers, so it is alive and mid-restart: it is
    waited for however long it takes (only [peer] wait ends the attempt, and
    retries it), and it stops the down clock, so the time it spends restarting
    never counts towards unreachable_after. Stuck for longer than that, it is
    shown (/status peer.warning, a warning log line), never overridden.
    `publishing` comes right before a restart (and right after, while recording).
  - 5: both agents can be in their gates at once: a secondary catching up on the
    commit we run (it goes as soon as it sees us healthy) while we wait to deploy
    the next. The secondary goes; we wait until it has restarted.
  - 2 and 7: a peer counts as down only while it does not answer, or answers that
    its dhcpd is down; then we go after unreachable_after, knowingly.
A garbage answer is no answer: the gate logs "peer answers garbage: <why>" and
waits, exactly as for a dead peer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import Enum
from typing import NamedTuple

from agent.daemon.peer import RESTARTING, PeerClient, View
from agent.errors import PeerError, PeerRefused, RestartError

log = logging.getLogger(__name__)

IN_RESTART = ("publishing", RESTARTING)  # the phases of a deploy past its own gate
IDLE = ("idle", "failed")  # no reconcile running (failed: waiting for its retry)


class Decision(Enum):
    GO = "go"
    WAIT = "wait"
    REFUSE = "refuse"


class Ruling(NamedTuple):
    decision: Decision
    why: str  # for the log and the attempt's message


def decide(role: str, sha: str, view: View, down_for: float, patience: float) -> Ruling:
    """May this node restart onto sha now? The rules of the module docstring, in order.
    down_for: the peer's down clock (PeerClient.down_for); patience: unreachable_after."""
    if role not in ("primary", "secondary"):
        return Ruling(Decision.GO, "no pair")
    if view.doc is None:
        return _down_clock(str(view.error), down_for, patience)
    if view.state in IN_RESTART:
        return Ruling(Decision.WAIT, f"it is {view.state}")
    tried = view.tried(sha)
    if role == "secondary" and tried in ("refused", "rolled_back"):
        return Ruling(Decision.REFUSE, f"the primary {tried.replace('_', ' ')} {sha[:12]}")
    if role == "primary" and _following(view):
        return Ruling(Decision.WAIT, f"it is deploying {str(view.doc.working_on)[:12]}, which "
                      "it saw us run: it goes first")  # fmt: skip
    if role == "primary" and view.deployed_sha is None:
        return Ruling(Decision.GO, "it never deployed: a new pair")
    if view.dhcpd_down:
        return _down_clock("its dhcpd is not running", down_for, patience)
    if role == "primary" or view.deployed_sha == sha:
        return Ruling(Decision.GO, f"it is healthy on {str(view.deployed_sha)[:12]}")
    return Ruling(Decision.WAIT, f"it runs {str(view.deployed_sha)[:12]}, not {sha[:12]} "
                  f"(state {view.state})")  # fmt: skip


def _down_clock(why: str, down_for: float, patience: float) -> Ruling:
    if down_for >= patience:
        return Ruling(Decision.GO, f"{why}, for {down_for:.1f} s (unreachable_after {patience:g})")
    return Ruling(Decision.WAIT, why)


def _following(view: View) -> bool:
    """The secondary is deploying the commit it last saw us run: it will restart next."""
    doc = view.doc
    if doc is None or doc.state in IDLE or doc.working_on is None or doc.peer is None:
        return False
    return doc.working_on == doc.peer.deployed_sha


# Seconds between looks while a deploy waits: at the peer's /status (one cheap request;
# the secondary's restart follows the primary's record by at most this), and at
# failover over OMAPI (an omshell run, and the live config parsed for its peers).
GATE_POLL = 0.1


FAILOVER_POLL = 0.5


class PairGate:
    """agent.engine.reconcile.Pairing for one server of a pair: the rolling-restart protocol."""

    def __init__(
        self,
        role: str,
        client: PeerClient,
        failover_timeout: float,
        failover_normal: Callable[[], bool | None],
        stopping: threading.Event,
    ) -> None:
        self.role = role
        self.stopping = stopping  # a SIGTERM must not wait out a peer
        self.client = client
        self.failover_timeout = failover_timeout
        self.failover_normal = failover_normal  # None: this config declares no failover

    def before_restart(self, sha: str) -> None:
        cfg = self.client.cfg
        deadline = time.monotonic() + cfg.wait
        said = None
        while True:
            view = self.client.look()
            ruling = decide(self.role, sha, view, self.client.down_for(), cfg.unreachable_after)
            if ruling.why != said:
                _log(sha, view, ruling)
                said = ruling.why
            if ruling.decision is Decision.GO:
                return
            if ruling.decision is Decision.REFUSE:
                raise PeerRefused(
                    f"{ruling.why}: the secondary never restarts onto a commit its primary "
                    "could not run"
                )
            if time.monotonic() >= deadline:
                raise PeerError(f"waited {cfg.wait:g} s for the peer: {ruling.why}")
            self._pause(GATE_POLL)

    def after_restart(self) -> None:
        """Failover back to normal within failover_timeout, when the peer is there to talk to."""
        if self.failover_timeout <= 0 or not self.client.look().healthy:
            return  # a dead peer never gets back to normal: no reason to roll back for it
        deadline = time.monotonic() + self.failover_timeout
        while self.failover_normal() not in (True, None):
            if time.monotonic() >= deadline:
                raise RestartError(
                    f"failover did not return to normal within {self.failover_timeout:g} s "
                    "of the restart, though the peer is up"
                )
            self._pause(FAILOVER_POLL)

    def _pause(self, seconds: float) -> None:
        if self.stopping.wait(seconds):
            raise PeerError("the agent is stopping: the deploy was abandoned before its restart")


def _log(sha: str, view: View, ruling: Ruling) -> None:
    """A line each time the reason changes: the operator sees why a deploy waits or went."""
    level = logging.INFO if view.healthy or view.state in IN_RESTART else logging.WARNING
    if ruling.decision is Decision.GO:
        log.log(level, "peer gate: %s may restart now: %s", sha[:12], ruling.why)
    else:
        log.log(level, "peer gate: %s waits for the peer: %s", sha[:12], ruling.why)
