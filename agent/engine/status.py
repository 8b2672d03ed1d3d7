"""What is live on this node, worked out from disk: the records and the target itself."""

from __future__ import annotations

from typing import Any, Literal

from agent import __version__, tree
from agent.engine.reconcile import Node
from agent.engine.state import State

Drift = Literal["none", "rollback_tree", "drifted", "never_deployed", "missing", "deploying"]


def report(node: Node, busy: bool = False) -> dict[str, Any]:
    """The status document: the same for `dhcp-gitops status --json` and GET /status.

    busy: a reconcile is running, so the live tree is between two records.
    """
    state = node.store.load()
    cfg = node.config
    return {
        "node": {"name": cfg.node.name, "role": cfg.node.role},
        "version": __version__,
        "source": {"branch": cfg.source.branch, "path": cfg.source.path},
        "target": str(cfg.deploy.target),
        "deployed": _dump(state.deployed),
        "previous": _dump(state.previous),
        "pin": _dump(state.pin),
        "last_attempt": _dump(state.last_attempt),
        "live": live(node, state, busy),
    }


def live(node: Node, state: State, busy: bool = False) -> dict[str, Any]:
    """Whether the target still holds the tree we deployed (drift), and which files differ."""
    if busy:
        return _deploying(node)
    try:
        return _compare(node, state)
    except FileNotFoundError:  # a deploy exchanged the trees while we read them
        return _deploying(node)


def _deploying(node: Node) -> dict[str, Any]:
    stage = node.workspace.stage.exists()
    return {"digest": None, "drift": "deploying", "changed_files": None, "stage_leftover": stage}


def _compare(node: Node, state: State) -> dict[str, Any]:
    ws, preserve = node.workspace, node.preserve
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
    return {
        "digest": digest,
        "drift": drift,
        "changed_files": changed,
        "stage_leftover": ws.stage.exists(),
    }


def _dump(record: Any) -> Any:
    return None if record is None else record.model_dump(mode="json")
