"""What is live on this node, worked out from disk: the records and the target itself.

Hashing the live tree costs in proportion to its size (a 60 MB tree: a fifth of a
second of CPU), so the running agent never does it per request: it checks the tree
on its poll and after each reconcile (`check`, `refresh`), and /status and /metrics
show the last check with the time it was made (`live.checked_at`).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from agent import __version__, tree
from agent.engine.document import (
    SCHEMA_VERSION,
    AttemptRecord,
    DeployedRecord,
    Drift,
    Live,
    NodeInfo,
    PinRecord,
    SourceInfo,
    Status,
)
from agent.engine.reconcile import Node
from agent.engine.state import Attempt, State, now
from agent.errors import DhcpGitopsError

log = logging.getLogger(__name__)
Record = TypeVar("Record", DeployedRecord, PinRecord, AttemptRecord)

# The last check of each target in this process: written by the loop's thread,
# read by the API's. One entry per target; a new one replaces the old whole.
_checks: dict[Path, Live] = {}
_checks_lock = threading.Lock()


def document(node: Node, busy: bool = False, checked: Live | None = None) -> Status:
    """The status document from disk: `dhcp-gitops status --json`, the core of GET /status.

    busy: a reconcile is running, so the live tree is between two records.
    checked: the drift check to show (the running agent's last one); None checks now.
    """
    state = node.store.load()
    cfg = node.config
    return Status(
        schema_version=SCHEMA_VERSION,
        node=NodeInfo(name=cfg.node.name, role=cfg.node.role),
        version=__version__,
        source=SourceInfo(branch=cfg.source.branch, path=cfg.source.path),
        target=str(cfg.deploy.target),
        deployed=_read(DeployedRecord, state.deployed),
        previous=_read(DeployedRecord, state.previous),
        pin=_read(PinRecord, state.pin),
        last_attempt=_read(AttemptRecord, state.last_attempt),
        live=shown(node, busy, checked or check(node, state)),
    )


def report(node: Node, busy: bool = False) -> dict[str, Any]:
    """document() as JSON-ready data."""
    return document(node, busy).model_dump(mode="json")


def shown(node: Node, busy: bool, checked: Live) -> Live:
    """What a document says of the live tree now: a running deploy owns the tree (and its
    stage); otherwise the check, and whether a stage lies about (a stat, not a hash)."""
    if busy:
        return _deploying()
    return checked.model_copy(update={"stage_leftover": node.workspace.stage.exists()})


def last_check(node: Node) -> Live:
    """The last check of this node's target, made now if there was none in this process."""
    with _checks_lock:
        found = _checks.get(node.workspace.target)
    return found if found is not None else check(node, node.store.load())


def refresh(node: Node) -> None:
    """Check the live tree now, for /status and /metrics (the loop, after each reconcile).
    A state dir that cannot be read keeps the last check: the next reconcile says why."""
    try:
        check(node, node.store.load())
    except (DhcpGitopsError, OSError) as err:
        log.warning("drift check: %s", err)


def check(node: Node, state: State) -> Live:
    """Whether the target still holds the tree we deployed (drift), and which files differ;
    kept as this target's last check."""
    try:
        checked = _compare(node, state)
    except FileNotFoundError:  # a deploy (a one-shot sync) exchanged the trees meanwhile
        return _deploying()
    with _checks_lock:
        _checks[node.workspace.target] = checked
    return checked


def live(node: Node, state: State, busy: bool = False) -> dict[str, Any]:
    """check() as data, or "deploying" while busy (the loop's poll asks for ["drift"])."""
    return (_deploying() if busy else check(node, state)).model_dump(mode="json")


def _deploying() -> Live:
    # The stage, if any, is the running deploy's own (e.g. waiting for the peer).
    return Live(digest=None, drift="deploying", changed_files=None, stage_leftover=False,
                checked_at=now())  # fmt: skip


def _compare(node: Node, state: State) -> Live:
    ws, preserve = node.workspace, node.preserve
    checked_at = now()
    digest = tree.digest(ws.target, preserve)
    drift: Drift
    changed: list[str] | None = None
    if digest is None:
        drift = "missing"
    elif state.deployed is None:
        drift = "never_deployed"
    elif digest == state.deployed.digest:
        drift = "none"
    elif digest == tree.digest(ws.previous, preserve):
        drift = "rollback_tree"
    else:
        drift = "drifted"
        changed = node.releases.changed_files(state.deployed.sha, ws.target, preserve)
    return Live(digest=digest, drift=drift, changed_files=changed,
                stage_leftover=ws.stage.exists(), checked_at=checked_at)  # fmt: skip


def attempt_record(attempt: Attempt) -> AttemptRecord:
    """An attempt as the document shows it: one the state dir could not take, say."""
    return AttemptRecord.model_validate(attempt.model_dump())


def _read(kind: type[Record], record: BaseModel | None) -> Record | None:
    """A record of state.json as the document's (lenient) model of it."""
    return None if record is None else kind.model_validate(record.model_dump())
