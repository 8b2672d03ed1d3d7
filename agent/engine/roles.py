"""The roles a pair folder declares, the node name of each, and the files only the
servers hold (pair.toml's tables and its `server_only` list)."""

from __future__ import annotations

import posixpath
import tomllib
from typing import Any

from agent.engine import render
from agent.errors import RenderError
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


def server_only_of(snapshot: Snapshot, pair: str) -> tuple[str, ...]:
    """pair.toml's `server_only`: live paths (relative to the target) whose repo file
    is a stand-in, each server keeping its own real file (a TSIG or OMAPI key)."""
    where = render.join_path(pair, render.PAIR_FILE)
    value = _pair_toml(snapshot, pair).get("server_only", [])
    if not isinstance(value, list):
        raise RenderError(where, "server_only must be a list of paths relative to the target")
    return tuple(_server_only_path(where, p) for p in value)


def _server_only_path(where: str, path: object) -> str:
    if not isinstance(path, str) or not path:
        raise RenderError(where, f"server_only: {path!r} is not a path relative to the target")
    norm = posixpath.normpath(path)
    if path.startswith("/") or norm != path or norm == ".." or norm.startswith("../"):
        raise RenderError(where, f"server_only: {path!r} must be relative to the target, "
                          'without "..", "." or a trailing "/"')  # fmt: skip
    return path


def _pair_table(snapshot: Snapshot, pair: str) -> dict[str, dict[str, object]]:
    raw = _pair_toml(snapshot, pair)
    return {k: v for k, v in raw.items() if isinstance(v, dict)}


def _pair_toml(snapshot: Snapshot, pair: str) -> dict[str, Any]:
    files = snapshot.read(render.join_path(pair, render.PAIR_FILE))
    if not files:
        return {}
    try:
        return tomllib.loads(files[0].data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}  # render reports it with its line
