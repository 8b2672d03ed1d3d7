"""The status document for people (`dhcp-gitops status`), and the verdict a monitoring
script reads from its exit status: what keeps the node from "deployed and healthy"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TextIO

from agent.engine.document import AgentStatus, AttemptRecord, Live, PeerSection, Status
from agent.engine.state import Deployed

SUCCESS = ("deployed", "current")
WAITING = "waiting for peer"


def print_status(doc: Status | Mapping[str, Any], out: TextIO) -> None:
    """The status document for people: one row per fact, the pair's too, every error line."""
    if not isinstance(doc, Status):
        doc = (AgentStatus if "state" in doc else Status).model_validate(doc)
    for key, value in _status_rows(doc):
        print(f"{key:<10} {value}", file=out)


def attention(doc: Status) -> list[str]:
    """What keeps the node from "deployed and healthy" (exit 1 when any)."""
    found = []
    last = doc.last_attempt
    if doc.deployed is None:
        found.append("nothing deployed")
    if last is not None and last.result not in SUCCESS:
        found.append(f"the last attempt {str(last.result).replace('_', ' ')}")
    drift = doc.live.drift
    if drift in ("rollback_tree", "drifted") or (drift == "missing" and doc.deployed):
        found.append(f"drift ({drift.replace('_', ' ')})")
    if isinstance(doc, AgentStatus):
        found += _agent_attention(doc)
    return found


def _agent_attention(doc: AgentStatus) -> list[str]:
    found = ["dhcpd is not running"] if doc.dhcpd.running is False else []
    peer = doc.peer
    if peer is not None:
        if not peer.reachable:
            found.append("the peer does not answer")
        if peer.warning:
            found.append("the peer is stuck restarting")
        if peer.clock_skew == "error":
            found.append("the clocks of the pair are too far apart")
    return found


def _status_rows(doc: Status) -> list[tuple[str, str]]:
    rows = [("node", f"{doc.node.name} ({doc.node.role}), target {doc.target}")]
    if doc.deployed:
        rows.append(("deployed", _commit_line(doc.deployed)))
        rows.append(("", f"deployed at {doc.deployed.deployed_at}"))
    else:
        rows.append(("deployed", "nothing yet"))
    waiting = isinstance(doc, AgentStatus) and doc.state == WAITING
    rows.append(("live", _live_line(doc.live, waiting)))
    if isinstance(doc, AgentStatus):
        rows += _agent_rows(doc)
    if doc.pin:
        rows.append(("pinned", f"{doc.pin.sha[:12]} by a rollback, until the branch moves on"))
    if doc.last_attempt:
        rows += _attempt_rows(doc.last_attempt)
    found = attention(doc)
    rows.append(("status", "ATTENTION: " + "; ".join(found) if found else "ok"))
    return rows


def _agent_rows(doc: AgentStatus) -> list[tuple[str, str]]:
    on = f" on {doc.working_on[:12]}" if doc.working_on else ""
    state = doc.state + on
    if doc.state == WAITING:
        state += " (validated; its restart waits for the peer's go)"
    rows = [("agent", f"{state}, up {doc.uptime_seconds:.0f} s"), ("dhcpd", _dhcpd_line(doc))]
    if doc.peer is not None:
        rows += _peer_rows(doc.peer)
    for p in doc.failover:
        mine, partner = f"{p.mine}{_since(p.mine_since)}", f"{p.partner}{_since(p.partner_since)}"
        rows.append(("failover", f"{p.peer}: mine {mine}, partner {partner}"))
    return rows


def _peer_rows(peer: PeerSection) -> list[tuple[str, str]]:
    seen = f", seen {peer.seen_at}" if peer.seen_at else ""
    if not peer.reachable:
        down = f" for {peer.down_for_seconds:.0f} s" if peer.down_for_seconds else ""
        rows = [("peer", f"NOT ANSWERING{down}: {peer.error}{seen}")]
    else:
        same = "same commit" if peer.same_commit else "NOT our commit"
        skew = f"{peer.clock_skew_seconds:+.1f} s" if peer.clock_skew_seconds is not None else "?"
        rows = [("peer", f"{peer.state}, runs {str(peer.deployed_sha)[:12]} ({same}){seen}"),
                ("", f"clock skew {skew} ({peer.clock_skew})")]  # fmt: skip
    if peer.warning:
        rows.append(("", f"WARNING: {peer.warning}"))
    return rows


def _attempt_rows(attempt: AttemptRecord) -> list[tuple[str, str]]:
    sha = (attempt.sha or "?")[:12]
    rows = [("last", f"{attempt.result} {sha} at {attempt.finished_at}")]
    if attempt.result in SUCCESS:
        return rows
    first, *more = attempt.message.splitlines() or [""]
    rows.append(("", f"step {attempt.step}: {first}"))
    rows += [("", line) for line in more]
    for problem in attempt.problems:
        rows.append(("", str(problem)))
        rows += [("", f"  {line}") for line in problem.context]
    return rows


def _commit_line(c: Deployed) -> str:
    return f"{c.sha[:12]} {c.subject!r} by {c.author}, committed {c.committed_at}"


def _since(when: str | None) -> str:
    return f" since {when}" if when else ""


def _dhcpd_line(doc: AgentStatus) -> str:
    dhcpd = doc.dhcpd
    if dhcpd.running is None:
        return f"restart = {dhcpd.mode}: managed outside the agent"
    return f"running, pid {dhcpd.pid}" if dhcpd.running else "NOT RUNNING"


DRIFT_TEXT = {
    "none": "matches the deployed tree",
    "rollback_tree": "DRIFT: holds the rollback tree, not the deployed one",
    "drifted": "DRIFT: changed outside dhcp-gitops",
    "never_deployed": "not deployed by dhcp-gitops yet",
    "missing": "the target folder does not exist",
    "deploying": "a deploy is running",
}


def _live_line(live: Live, waiting: bool) -> str:
    if waiting:
        return "unchanged: the deploy waits for the peer before it touches the live tree"
    text = DRIFT_TEXT[live.drift]
    if live.changed_files:
        text += ": " + ", ".join(live.changed_files)
    if live.stage_leftover:
        text += " (an interrupted run left a stage; the next sync removes it)"
    if live.checked_at and live.drift != "deploying":
        text += f" (checked {live.checked_at})"
    return text
