"""The roles a pair folder declares, and the node name of each (pair.toml's tables)."""

from __future__ import annotations

import tomllib

from agent.engine import render
from agent.source.snapshot import Snapshot


def roles_of(snapshot: Snapshot, pair: str) -> list[tuple[str, str]]:
    """(role, node name) to check: the pair's two roles, or one standalone server."""
    table = _pair_table(snapshot, pair)
    both = ("primary", "secondary")
    folders = [render.join_path(pair, render.role_folder(r)) for r in both]
    has_role_folders = any(snapshot.exists(f) for f in folders)
    if any(r in table for r in both) or has_role_folders:
        return [(r, str(table.get(r, {}).get("name", r))) for r in both]
    return [("standalone", "standalone")]


def _pair_table(snapshot: Snapshot, pair: str) -> dict[str, dict[str, object]]:
    files = snapshot.read(render.join_path(pair, render.PAIR_FILE))
    if not files:
        return {}
    try:
        raw = tomllib.loads(files[0].data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}  # render reports it with its line
    return {k: v for k, v in raw.items() if isinstance(v, dict)}
