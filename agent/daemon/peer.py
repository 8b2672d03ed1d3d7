"""The other server of the pair: what it runs, whether it is healthy, how far its clock is.

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

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from agent.config import Peer as PeerConfig
from agent.errors import PeerError, PeerRefused, ServiceError

RESTARTING = "restarting"


@dataclass(frozen=True)
class View:
    """The peer as last seen."""

    reachable: bool
    error: str | None = None
    doc: dict[str, Any] | None = None  # its /status document
    skew: float | None = None  # seconds the peer's clock is ahead of ours
    seen_at: float = 0.0  # time.time() of the look

    @property
    def deployed_sha(self) -> str | None:
        deployed = (self.doc or {}).get("deployed") or {}
        return deployed.get("sha")

    @property
    def state(self) -> str | None:
        return (self.doc or {}).get("state")

    @property
    def healthy(self) -> bool:
        """Reachable, not restarting, and its dhcpd running (when it supervises one)."""
        dhcpd = (self.doc or {}).get("dhcpd") or {}
        return self.reachable and self.state != RESTARTING and dhcpd.get("running", True)

    def tried(self, sha: str) -> str | None:
        """The result of the peer's last attempt if it was at this commit."""
        last = (self.doc or {}).get("last_attempt") or {}
        return last.get("result") if last.get("sha") == sha else None


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


def skew_level(skew: float | None, cfg: PeerConfig) -> str:
    if skew is None:
        return "unknown"
    if abs(skew) >= cfg.skew_error:
        return "error"
    return "warning" if abs(skew) >= cfg.skew_warn else "ok"


class PeerClient:
    """Looks at the peer's /status; remembers since when it has been down or unhealthy."""

    def __init__(self, cfg: PeerConfig) -> None:
        self.cfg = cfg
        self.last = View(reachable=False, error="not looked at yet")
        self._bad_since: float | None = None
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return self.cfg.status_url is not None

    def look(self) -> View:
        view = self._fetch()
        with self._lock:
            self.last = view
            if view.healthy:
                self._bad_since = None
            elif self._bad_since is None:
                self._bad_since = time.monotonic()
        return view

    def blocked_for(self) -> float:
        with self._lock:
            return 0.0 if self._bad_since is None else time.monotonic() - self._bad_since

    def _fetch(self) -> View:
        url = str(self.cfg.status_url)
        sent = time.time()
        try:
            with urllib.request.urlopen(url, timeout=self.cfg.timeout) as answer:  # noqa: S310
                doc = json.load(answer)
        except (OSError, ValueError) as err:
            return View(reachable=False, error=f"{url}: {err}", seen_at=sent)
        received = time.time()
        return View(reachable=True, doc=doc, skew=_skew(doc, sent, received), seen_at=received)


def _skew(doc: dict[str, Any], sent: float, received: float) -> float | None:
    """The peer's clock minus ours, taking its answer as given halfway through the request."""
    theirs = doc.get("server_time_unix")
    if not isinstance(theirs, int | float):
        stamp = doc.get("server_time")
        if not isinstance(stamp, str):
            return None
        theirs = datetime.fromisoformat(stamp).timestamp()
    return round(float(theirs) - (sent + received) / 2, 3)


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
        while True:
            view = self.client.look()
            decision = decide(
                self.role, sha, view, self.client.blocked_for(), cfg.unreachable_after
            )
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
                raise ServiceError(
                    f"failover did not return to normal within {self.failover_timeout:g} s "
                    "of the restart, though the peer is up"
                )
            self._pause(FAILOVER_POLL)

    def _pause(self, seconds: float) -> None:
        if self.stopping.wait(seconds):
            raise PeerError("the agent is stopping: the deploy was abandoned before its restart")


def waiting_for(view: View, sha: str) -> str:
    if not view.reachable:
        return f"it is unreachable ({view.error})"
    if view.state == RESTARTING:
        return "it is restarting"
    if not view.healthy:
        return "its dhcpd is not running"
    return f"it runs {str(view.deployed_sha)[:12]}, not {sha[:12]} (state {view.state})"


def report(client: PeerClient, own_sha: str | None) -> dict[str, Any] | None:
    """The peer as /status shows it, from the last look (never a live request: two peers
    asking each other for /status would recurse)."""
    if not client.configured:
        return None
    view = client.last
    return {
        "url": client.cfg.status_url,
        "reachable": view.reachable,
        "error": view.error,
        "state": view.state,
        "healthy": view.healthy,
        "deployed_sha": view.deployed_sha,
        "same_commit": view.reachable and view.deployed_sha == own_sha,
        "clock_skew_seconds": view.skew,
        "clock_skew": skew_level(view.skew, client.cfg),
        "seen_at": datetime.fromtimestamp(view.seen_at, UTC).isoformat(timespec="seconds")
        if view.seen_at
        else None,
    }
