"""The peer gate: when this server of a pair may restart onto a commit.

Rolling restart, the protocol: the two servers never restart at the same time.
  - the primary goes first; it waits while the secondary is restarting, down or
    unhealthy;
  - the secondary restarts onto a commit only once the primary reports that
    commit live and dhcpd healthy; if the primary refused it or rolled it back,
    the secondary refuses it too and never restarts onto it;
  - a peer that is unreachable or unhealthy for `unreachable_after` seconds no
    longer blocks: a dead peer is when a deploy is needed most.
The decision is a pure function of what the peer says (`decide`), tested as a table.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import Enum

from agent.daemon.peer import RESTARTING, PeerClient, View
from agent.errors import PeerError, PeerRefused, RestartError

log = logging.getLogger(__name__)


class Decision(Enum):
    GO = "go"
    WAIT = "wait"
    REFUSE = "refuse"


def decide(role: str, sha: str, view: View, blocked_for: float, patience: float) -> Decision:
    """May this node restart onto sha now? blocked_for: how long the peer has been down or
    unhealthy; patience: unreachable_after."""
    if role not in ("primary", "secondary"):
        return Decision.GO
    if role == "primary" and view.reachable and view.deployed_sha is None:
        return Decision.GO  # a peer that never deployed serves nobody yet (a new pair)
    if not view.reachable or (not view.healthy and view.state != RESTARTING):
        return Decision.GO if blocked_for >= patience else Decision.WAIT
    if view.state == RESTARTING:
        return Decision.WAIT  # never both at once
    if role == "primary":
        return Decision.GO
    if view.tried(sha) in ("refused", "rolled_back"):
        return Decision.REFUSE
    return Decision.GO if view.deployed_sha == sha else Decision.WAIT


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
        said = ""
        while True:
            view = self.client.look()
            blocked_for = self.client.blocked_for()
            decision = decide(self.role, sha, view, blocked_for, cfg.unreachable_after)
            why = reason(self.role, sha, view, decision, blocked_for)
            said = _say(decision, sha, why, said)
            if decision is Decision.GO:
                return
            if decision is Decision.REFUSE:
                raise PeerRefused(
                    f"the primary {str(view.tried(sha)).replace('_', ' ')} {sha[:12]}: the "
                    "secondary never restarts onto a commit its primary could not run"
                )
            if time.monotonic() >= deadline:
                raise PeerError(f"waited {cfg.wait:g} s for the peer: {waiting_for(view, sha)}")
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


def _say(decision: Decision, sha: str, why: str, said: str) -> str:
    """One log line per decision: a wait is said again only when its reason changes."""
    line = f"peer: {VERBS[decision]} {sha[:12]}: {why}"
    if line != said:
        log.info("%s", line, extra={"sha": sha, "decision": decision.value})
    return line


VERBS = {Decision.GO: "going ahead with", Decision.WAIT: "waiting before",
         Decision.REFUSE: "refusing"}  # fmt: skip


def reason(role: str, sha: str, view: View, decision: Decision, blocked_for: float) -> str:
    """Why decide() said what it said, in the words of the log."""
    if decision is Decision.WAIT:
        return waiting_for(view, sha)
    if decision is Decision.REFUSE:
        rolled_back = view.tried(sha) == "rolled_back"
        return "the primary rolled it back" if rolled_back else "the primary refused it"
    if role == "primary" and view.reachable and view.deployed_sha is None:
        return "the secondary has deployed nothing yet"
    if not view.reachable or (not view.healthy and view.state != RESTARTING):
        return f"{waiting_for(view, sha)} since {blocked_for:.0f} s: it no longer blocks"
    if role == "primary":
        return "the secondary is up and not restarting"
    return f"the primary runs {sha[:12]} and is healthy"


def waiting_for(view: View, sha: str) -> str:
    if not view.reachable:
        return f"it is unreachable ({view.error})"
    if view.state == RESTARTING:
        return "it is restarting"
    if not view.healthy:
        return "its dhcpd is not running"
    return f"it runs {str(view.deployed_sha)[:12]}, not {sha[:12]} (state {view.state})"
