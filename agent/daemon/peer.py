"""The other server of the pair, as its /status tells: what it runs, whether it is
healthy, how far its clock is, and since when it has been down or restarting. The
rolling restart that uses it is agent/daemon/gate.py.

The peer's answer is read with the status document's own model
(agent/engine/document.py). An answer that does not read counts as no answer:
"peer answers garbage: <why>", exactly like a peer that is down.

The two clocks, updated at every look (the watcher's, and the gate's while a deploy
waits):

    the peer's answer                   down clock           restarting clock
    none: unreachable, too slow,        starts (if stopped)  kept
      garbage
    state "restarting"                  stopped              starts (if stopped)
    its dhcpd not running (otherwise)   starts (if stopped)  stopped
    healthy                             stopped              stopped

The down clock is the only one that can let a deploy go (gate.py). A peer that
answers "restarting" is alive: it stops the down clock, so time spent restarting
never counts towards unreachable_after. The restarting clock only warns: past
unreachable_after the peer is shown as stuck (/status peer.warning, one warning log
line), and still waited for.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from pydantic import ValidationError

from agent.config import Peer as PeerConfig
from agent.engine.document import AgentStatus, PeerSection, SkewLevel, why

log = logging.getLogger(__name__)

RESTARTING = "restarting"
GARBAGE = "peer answers garbage: "
# A document is a few kB; a drifted tree's file list or a long dhcpd error makes it
# larger, never this large. More is garbage, and is not read further.
MAX_DOCUMENT = 4 * 1024 * 1024
ACCEPT = {"Accept": "application/json"}


@dataclass(frozen=True)
class View:
    """The peer as last seen."""

    reachable: bool  # it answered with a document that reads
    error: str | None = None
    doc: AgentStatus | None = None  # its /status document
    skew: float | None = None  # seconds the peer's clock is ahead of ours
    seen_at: float = 0.0  # time.time() of the look

    @property
    def deployed_sha(self) -> str | None:
        deployed = self.doc.deployed if self.doc else None
        return deployed.sha if deployed else None

    @property
    def state(self) -> str | None:
        return self.doc.state if self.doc else None

    @property
    def dhcpd_down(self) -> bool:
        """It says its (supervised) dhcpd is not running."""
        return self.doc is not None and self.doc.dhcpd.running is False

    @property
    def healthy(self) -> bool:
        """Reachable, not restarting, and its dhcpd running (when it supervises one)."""
        return self.reachable and self.state != RESTARTING and not self.dhcpd_down

    def tried(self, sha: str) -> str | None:
        """The result of the peer's last attempt if it was at this commit."""
        last = self.doc.last_attempt if self.doc else None
        return last.result if last is not None and last.sha == sha else None


def skew_level(skew: float | None, cfg: PeerConfig) -> SkewLevel:
    if skew is None:
        return "unknown"
    if abs(skew) >= cfg.skew_error:
        return "error"
    return "warning" if abs(skew) >= cfg.skew_warn else "ok"


@dataclass(frozen=True)
class Clocks:
    """Since when (time.monotonic()) the peer has been down, and has reported restarting."""

    down_since: float | None = None
    restarting_since: float | None = None

    def down_for(self, now: float) -> float:
        return 0.0 if self.down_since is None else now - self.down_since

    def restarting_for(self, now: float) -> float | None:
        return None if self.restarting_since is None else now - self.restarting_since


def tick(clocks: Clocks, view: View, now: float) -> Clocks:
    """The clocks after one look: the table of the module docstring."""
    restarting = view.reachable and view.state == RESTARTING
    down = not view.reachable or (view.dhcpd_down and not restarting)
    restarting_since: float | None
    if restarting:
        restarting_since = _started(clocks.restarting_since, now)
    else:  # no answer says nothing about its restart: the restarting clock is kept
        restarting_since = None if view.reachable else clocks.restarting_since
    return Clocks(_started(clocks.down_since, now) if down else None, restarting_since)


def _started(since: float | None, now: float) -> float:
    return now if since is None else since


class PeerClient:
    """Looks at the peer's /status; keeps the down and restarting clocks (module docstring)."""

    def __init__(self, cfg: PeerConfig) -> None:
        self.cfg = cfg
        self.last = View(reachable=False, error="not looked at yet")
        self._clocks = Clocks()
        self._said: str | None = None  # the condition last logged
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return self.cfg.status_url is not None

    def look(self) -> View:
        view = self._fetch()
        with self._lock:
            self.last = view
            self._clocks = tick(self._clocks, view, time.monotonic())
        self._log_change(view)
        return view

    def down_for(self) -> float:
        """Seconds since the peer stopped answering (or said its dhcpd is down); 0 if not."""
        with self._lock:
            return self._clocks.down_for(time.monotonic())

    def restarting_for(self) -> float | None:
        """Seconds the peer has reported restarting; None while it does not."""
        with self._lock:
            return self._clocks.restarting_for(time.monotonic())

    def stuck(self) -> str | None:
        """A warning when the peer has reported restarting longer than unreachable_after."""
        restarting = self.restarting_for()
        if restarting is None or restarting < self.cfg.unreachable_after:
            return None
        return (f"the peer has reported restarting for {restarting:.0f} s: deploys here wait "
                "for it and never override that; look at the peer")  # fmt: skip

    def _log_change(self, view: View) -> None:
        """One warning line when the peer's condition changes, not one per look."""
        condition = _condition(view, self.stuck() is not None)
        if condition == self._said:
            return
        if condition == "answers":
            log.warning("peer: answers again (state %s)", view.state)
        elif condition == "stuck":
            log.warning("peer: %s", self.stuck())
        else:
            log.warning("peer: %s", view.error)
        self._said = condition

    def _fetch(self) -> View:
        url = str(self.cfg.status_url)
        sent = time.time()
        try:
            code, body = get(url, self.cfg.timeout, MAX_DOCUMENT)
        except (OSError, ValueError) as err:  # refused, reset, no route, too slow, TLS
            return View(reachable=False, error=f"{url}: {err}", seen_at=sent)
        except http.client.HTTPException as err:  # it sent bytes, but not an HTTP answer
            not_http = f"{GARBAGE}not an HTTP answer ({type(err).__name__})"
            return View(reachable=False, error=not_http, seen_at=sent)
        received = time.time()
        wrong = _wrong_answer(code, body)
        if body is not None and wrong is None:
            try:
                doc = AgentStatus.model_validate_json(body)
            except ValidationError as err:
                wrong = why(err)
            else:
                return View(True, doc=doc, skew=_skew(doc, sent, received), seen_at=received)
        return View(reachable=False, error=f"{GARBAGE}{wrong}", seen_at=received)


def _condition(view: View, stuck: bool) -> str:
    if stuck:
        return "stuck"
    if view.reachable:
        return "answers"
    return "garbage" if (view.error or "").startswith(GARBAGE) else "unreachable"


def _wrong_answer(code: int, body: bytes | None) -> str | None:
    if code != 200:
        return f"HTTP {code}"
    if body is None:
        return f"a document larger than {MAX_DOCUMENT // 1024 // 1024} MiB"
    return None


def get(url: str, timeout: float, limit: int) -> tuple[int, bytes | None]:
    """GET url: the status code and the body (None when larger than limit), all within
    timeout.

    One deadline for the whole exchange, not one per read: a peer that takes the
    connection and then answers a byte at a time (overloaded, or stopped with SIGSTOP
    after the kernel accepted) must not hold a deploy's gate longer than timeout. A
    timer shuts the socket down when it passes. No proxy, no redirect: a peer is
    addressed directly.
    """
    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    deadline = time.monotonic() + timeout
    conn = kind(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.connect()
        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _cut, (conn.sock,))
        watchdog.daemon = True
        watchdog.start()
        try:
            answer = _exchange(conn, _target(parts.path, parts.query), limit)
        finally:
            watchdog.cancel()
    except (OSError, http.client.HTTPException) as err:
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no whole answer within {timeout:g} s") from err
        raise
    finally:
        conn.close()
    if time.monotonic() >= deadline:  # cut short by the timer without an error
        raise TimeoutError(f"no whole answer within {timeout:g} s")
    return answer


def _exchange(
    conn: http.client.HTTPConnection, target: str, limit: int
) -> tuple[int, bytes | None]:
    conn.request("GET", target, headers=ACCEPT)
    answer = conn.getresponse()
    if answer.length is not None and answer.length > limit:
        return answer.status, None  # declared too large: not read at all
    body = answer.read(limit + 1)
    return answer.status, body if len(body) <= limit else None


def _target(path: str, query: str) -> str:
    return (path or "/") + (f"?{query}" if query else "")


def _cut(sock: socket.socket | None) -> None:
    """Wake the reader blocked on sock (shutdown, unlike close, does that)."""
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed: the exchange ended just now
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the OS socket, also under TLS


def _skew(doc: AgentStatus, sent: float, received: float) -> float:
    """The peer's clock minus ours, taking its answer as given halfway through the request."""
    return round(doc.server_time_unix - (sent + received) / 2, 3)


def report(client: PeerClient, own_sha: str | None) -> PeerSection | None:
    """The peer as /status shows it, from the last look (never a live request: two peers
    asking each other for /status would recurse)."""
    if not client.configured:
        return None
    view = client.last
    down = client.down_for()
    restarting = client.restarting_for()
    return PeerSection(
        url=str(client.cfg.status_url),
        reachable=view.reachable,
        error=view.error,
        state=view.state,
        healthy=view.healthy,
        deployed_sha=view.deployed_sha,
        same_commit=view.reachable and view.deployed_sha == own_sha,
        clock_skew_seconds=view.skew,
        clock_skew=skew_level(view.skew, client.cfg),
        seen_at=datetime.fromtimestamp(view.seen_at, UTC).isoformat(timespec="seconds")
        if view.seen_at
        else None,
        down_for_seconds=round(down, 1) if down else None,
        restarting_for_seconds=None if restarting is None else round(restarting, 1),
        warning=client.stuck(),
    )
