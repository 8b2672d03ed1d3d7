"""dhcpd's failover state: what its lease file recorded, and what OMAPI says now.

Two sources, for two questions:

    read(lease_file)      the state dhcpd last *recorded*, per failover peer. Cheap,
                          read-only, needs nothing but the file: /status, /metrics.
    from_omapi(peer)      the state dhcpd is in *now* (omshell, object
                          "failover-state"): the deploy health check.

They differ right after a restart. dhcpd never records "startup" (db.c:
"Never record our state as startup!"): at start it rewrites the lease file with
the state it saved before, so a server restarted out of "normal" reads "my
state normal" in its lease file for as long as it sits in startup without its
partner (15 s here, then communications-interrupted). Only OMAPI shows startup.
So "failover back to normal after a restart" must be asked of OMAPI; the lease
file says it too early.

The record dhcpd 4.4 appends on every change of its own or its partner's state
(write_failover_state in server/db.c, times in UTC unless `db-time-format local`):

    failover peer "dhcp-failover" state {
      my state normal at 3 2026/11/25 00:27:45;
      partner state normal at 3 2026/11/25 00:27:45;
      mclt 1800;                      <- the secondary only
    }

dhcpd.leases(5) says "peer state"; dhcpd writes "partner state". Both are read.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from agent.servers.base import PairState

NORMAL = "normal"

# enum failover_state of includes/failover.h: the codes OMAPI reports.
STATE_NAMES = {
    0: "unknown-state",
    1: "startup",
    2: "normal",
    3: "communications-interrupted",
    4: "partner-down",
    5: "potential-conflict",
    6: "recover",
    7: "paused",
    8: "shutdown",
    9: "recover-done",
    10: "resolution-interrupted",
    11: "conflict-done",
    254: "recover-wait",
}


# --- the lease file -----------------------------------------------------------

# dhcpd starts every record on a line of its own ("\nfailover peer ..."), and a
# quoted string elsewhere in the file cannot hold a newline (db_printable), so a
# record starts only where a line does.
_HEADER = re.compile(r'failover\s+peer\s+"(?P<peer>[^"]*)"\s+state\s*\{\s*$')
# The time runs to the first ";": "3 2026/11/25 00:27:45", "epoch 1795566465"
# (followed by "# <local time>" for humans), or "never".
_STATE = re.compile(
    r"(?P<who>my|partner|peer)\s+state\s+(?P<state>[\w-]+)\s+at\s+(?P<at>[^;]*);\s*(?:#.*)?"
)
_MCLT = re.compile(r"mclt\s+\d+\s*;")
_CLOSE = re.compile(r"\}\s*$")
_DEFAULT_TIME = re.compile(r"\d\s+(\d+)/(\d+)/(\d+)\s+(\d+):(\d+):(\d+)")
_EPOCH_TIME = re.compile(r"epoch\s+(\d+)")


@dataclass
class _Record:
    """A record being read: committed only at its closing brace."""

    peer: str
    states: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    def take(self, line: str) -> bool:
        """Absorb one line of the record's body; False if it does not belong there."""
        if found := _STATE.fullmatch(line):
            who = "partner" if found["who"] == "peer" else found["who"]
            self.states[who] = (found["state"], _iso_time(found["at"]))
            return True
        return _MCLT.fullmatch(line) is not None

    def result(self) -> PairState | None:
        if "my" not in self.states or "partner" not in self.states:
            return None
        mine, mine_since = self.states["my"]
        partner, partner_since = self.states["partner"]
        return PairState(self.peer, mine, partner, mine_since, partner_since)


def from_lease_file(text: str) -> list[PairState]:
    """The last complete failover record of each peer in a lease file's text.

    The lease file is a log: dhcpd appends a record at each state change and
    rewrites the file now and then, so the last record wins. A record cut short
    (dhcpd writing while we read, or a crash) has no closing brace and is
    ignored: the record before it stands. Peers come in order of first appearance.
    """
    return _last_per_peer(text.splitlines())


def read(lease_file: Path) -> list[PairState]:
    """from_lease_file on the file as it is now; [] when there is none (yet).

    Read-only, line by line: lease files of large sites run to many megabytes.
    dhcpd replaces the file by rename, so we read one whole version of it,
    possibly with a half-written record at the end. Other I/O errors propagate.

    Between two rewrites dhcpd only appends (a lease granted, a state change),
    so what was read is kept per file: /status and /metrics read only what was
    appended since (a 15 MB file took 100 ms on every request). A rewrite is a
    new file (inode); a file that shrank is read again from the start.
    """
    try:
        with lease_file.open("rb") as lines, _tails_lock:
            st = os.fstat(lines.fileno())
            tail = _tails.get(lease_file)
            if tail is None or tail.file != (st.st_dev, st.st_ino) or st.st_size < tail.offset:
                tail = _tails[lease_file] = _Tail((st.st_dev, st.st_ino))
            lines.seek(tail.offset)
            tail.offset += _scan(lines, tail.last)
            return list(tail.last.values())
    except FileNotFoundError:
        return []


@dataclass
class _Tail:
    """How far a lease file was read, and the last state of each peer up to there."""

    file: tuple[int, int]  # st_dev, st_ino
    offset: int = 0  # where the first line still to be read (again) starts
    last: dict[str, PairState] = field(default_factory=dict)


_tails: dict[Path, _Tail] = {}
_tails_lock = threading.Lock()  # /status and /metrics requests run in parallel threads


def _scan(lines: BinaryIO, last: dict[str, PairState]) -> int:
    """Put the complete records of lines into last; the bytes that need no second read.

    A record still open at the end, or a last line without its newline, is
    being written: the next read starts again where it starts.
    """
    parser = _Parser()
    pos = settled = opened_at = 0
    for raw in lines:
        start, pos = pos, pos + len(raw)
        before = parser.record
        if (done := parser.feed(raw.decode("utf-8", "replace"))) is not None:
            last[done.peer] = done  # a dict keeps the first insertion's place
        if not raw.endswith(b"\n"):  # the last line, being written: read it again
            return opened_at if before is not None else start
        if parser.record is None:
            settled = pos
        else:
            opened_at = start if parser.record is not before else opened_at
            settled = opened_at
    return settled


def _last_per_peer(lines: Iterable[str]) -> list[PairState]:
    last: dict[str, PairState] = {}
    for state in _records(lines):
        last[state.peer] = state  # a dict keeps the first insertion's place
    return list(last.values())


def _records(lines: Iterable[str]) -> Iterator[PairState]:
    parser = _Parser()
    for line in lines:
        if (done := parser.feed(line)) is not None:
            yield done


class _Parser:
    """The failover records of a lease file, fed one line at a time."""

    def __init__(self) -> None:
        self.record: _Record | None = None  # the record being read

    def feed(self, raw: str) -> PairState | None:
        """The state of the record this line closes, if it does."""
        line = raw.strip()
        if self.record is not None:
            if _CLOSE.fullmatch(line):
                done, self.record = self.record.result(), None
                return done
            if self.record.take(line):
                return None
            self.record = None  # not a record's line: that record was cut short
        if found := _HEADER.fullmatch(line):
            self.record = _Record(found["peer"])
        return None


def _iso_time(at: str) -> str | None:
    """dhcpd's time as ISO 8601 UTC; as written if it is something else ("never")."""
    at = at.strip()
    if not at:
        return None
    try:
        if found := _DEFAULT_TIME.fullmatch(at):
            year, month, day, hour, minute, second = (int(g) for g in found.groups())
            return datetime(year, month, day, hour, minute, second, tzinfo=UTC).isoformat()
        if found := _EPOCH_TIME.fullmatch(at):
            return from_epoch(int(found[1]))
    except (ValueError, OverflowError, OSError):
        pass  # a date no calendar has: keep dhcpd's words
    return at


def from_epoch(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def all_normal(states: Sequence[PairState]) -> bool:
    """Every peer normal on both sides; False when there is no state at all.

    No state is not "normal": a server that never recorded one has never
    talked to its partner (or has no failover peer, which the caller knows).
    """
    return bool(states) and all(s.mine == NORMAL and s.partner == NORMAL for s in states)


# --- OMAPI --------------------------------------------------------------------
