"""The other server of the pair, as its /status tells: what it runs, whether it is
healthy, how far its clock is. The rolling restart that uses it is agent/daemon/gate.py."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent.config import Peer as PeerConfig

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
