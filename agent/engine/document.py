"""The status document, typed and versioned: what GET /status answers, `status --json`
prints, and the other agent of a pair reads.

Two agents of a pair run different versions during a rolling upgrade, so each reads
the other's document by these rules, and every change to it keeps them:

    version 1    the untyped dict before this model; it had no schema_version
    version 2    schema_version; live.checked_at; peer.down_for_seconds,
                 peer.restarting_for_seconds, peer.warning

  - a document without schema_version is version 1;
  - fields a later version adds are optional here, so an older document still reads;
  - fields this version does not know are ignored, so a newer document still reads;
  - no field changes its name or meaning: a new meaning is a new field.

A document that does not read (wrong shape, a time that is no time, NaN) is no
answer at all (agent/daemon/peer.py): `why` says what is wrong without echoing it.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
)

from agent.config import Role
from agent.engine.state import Attempt, Deployed, Pin
from agent.servers.base import PairState

SCHEMA_VERSION = 2

Drift = Literal["none", "rollback_tree", "drifted", "never_deployed", "missing", "deploying"]
SkewLevel = Literal["ok", "warning", "error", "unknown"]


def _iso_time(text: str) -> str:
    """An ISO 8601 time with its zone, kept as written (the peer measures skew with it)."""
    try:
        zone = datetime.fromisoformat(text).tzinfo
    except ValueError:
        raise ValueError("not an ISO 8601 time") from None
    if zone is None:
        raise ValueError("an ISO 8601 time without a zone")
    return text


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


IsoTime = Annotated[
    str, AfterValidator(_iso_time), WithJsonSchema({"type": "string", "format": "date-time"})
]
Finite = Annotated[float, AfterValidator(_finite)]


class _Part(BaseModel):
    """A part of the document: unknown fields (a newer agent's) are ignored, no NaN."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, use_attribute_docstrings=True)


_READ = ConfigDict(extra="ignore", allow_inf_nan=False)


# The records as state.json holds them, read leniently: a newer peer may add fields.
class DeployedRecord(Deployed):
    model_config = _READ


class AttemptRecord(Attempt):
    model_config = _READ


class PinRecord(Pin):
    model_config = _READ


class NodeInfo(_Part):
    name: str
    role: Role


class SourceInfo(_Part):
    branch: str
    path: str
    """The pair folder in the repo ("" for its root)."""


class Live(_Part):
    """The live tree against the deployed one, as last checked (hashing it is costly:
    the agent checks on its poll and after each reconcile, never per request)."""

    digest: str | None
    """The live tree's hash (preserved files left out); null while deploying or missing."""
    drift: Drift
    changed_files: list[str] | None
    """Files that differ from the deployed release, when it drifted and the release is kept."""
    stage_leftover: bool
    """A stage no running deploy owns: what an interrupted run left (the next sync removes it)."""
    checked_at: IsoTime | None = None
    """When the tree was hashed for this (v2); the time of the answer while deploying."""


class Status(_Part):
    """What is live on this node, from disk: `dhcp-gitops status --json`."""

    schema_version: int = Field(1, ge=1)
    """The document's version; absent (version 1) before there was one."""
    node: NodeInfo
    version: str
    """The agent's version."""
    source: SourceInfo
    target: str
    """The live folder."""
    deployed: DeployedRecord | None
    previous: DeployedRecord | None
    """What the rollback tree holds: the deploy before this one."""
    pin: PinRecord | None
    """A rollback holding `sha` live until the branch moves past `while_head`."""
    last_attempt: AttemptRecord | None
    live: Live


class DhcpdHealth(_Part):
    mode: str
    """How a config is applied: supervise, command or none."""
    running: bool | None = None
    """Whether the supervised server runs; null when the system runs it, not the agent."""
    pid: int | None = None
    unexpected_restarts: int | None = None
    """How often a supervised server died between deploys and was started again."""


class PeerSection(_Part):
    """The other server of the pair, from this agent's last look at it (never a live
    request: two agents asking each other for /status would recurse)."""

    url: str
    reachable: bool
    """It answered with a document that reads; false when unreachable, slow or garbage."""
    error: str | None
    """Why it did not answer: the connection's error, or "peer answers garbage: <why>"."""
    state: str | None
    healthy: bool
    """Answering, not restarting, and its dhcpd running when it supervises one."""
    deployed_sha: str | None
    same_commit: bool
    clock_skew_seconds: Finite | None
    """Its clock minus ours, from a valid answer only."""
    clock_skew: SkewLevel
    seen_at: IsoTime | None
    down_for_seconds: Finite | None = None
    """How long it has not answered, or answered with its dhcpd down (v2): the clock
    that lets a deploy go once it reaches [peer] unreachable_after."""
    restarting_for_seconds: Finite | None = None
    """How long it has reported `restarting` (v2); that never lets a deploy go."""
    warning: str | None = None
    """What the operator should look at, e.g. a peer stuck restarting (v2)."""


class AgentStatus(Status):
    """GET /status: the document from disk and what only the running agent knows."""

    state: str
    """What the loop does now: idle, fetching, rendering, validating, waiting for peer,
    publishing, restarting, failed."""
    working_on: str | None
    dhcpd: DhcpdHealth
    reconciles: int
    next_retry_in: Finite | None
    """Seconds until a failed reconcile is retried."""
    uptime_seconds: Finite
    server_time: IsoTime
    server_time_unix: Finite
    """The peer measures clock skew with it."""
    peer: PeerSection | None
    """Null without [peer] status_url."""
    failover: list[PairState]
    """Per failover peer, the states dhcpd last recorded in its lease file."""

    def to_json(self) -> str:
        """The document as GET /status sends it: dhcpd's `running`, `pid` and
        `unexpected_restarts` only when the agent supervises dhcpd, as version 1 did
        (its readers take a missing `running` for a running dhcpd, not a null)."""
        system_runs_it = {"dhcpd": {"running", "pid", "unexpected_restarts"}}
        return self.model_dump_json(exclude=system_runs_it if self.dhcpd.running is None else None)


def why(err: ValidationError, most: int = 3) -> str:
    """What is wrong with a document, in one line, never quoting its values."""
    errors = err.errors(include_url=False, include_input=False, include_context=False)
    said = [f"{'.'.join(map(str, e['loc'])) or 'the document'}: {e['msg']}" for e in errors]
    more = f" (and {len(said) - most} more)" if len(said) > most else ""
    return "; ".join(said[:most]) + more
