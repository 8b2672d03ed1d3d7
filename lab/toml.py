"""TOML text for an agent's config file, from plain tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def toml_text(tables: Mapping[str, Mapping[str, Any]]) -> str:
    """TOML for the agent config: tables of strings, numbers, booleans and lists.

    A key whose value is None is left out (the agent's default applies).
    """
    lines: list[str] = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml_value(v)}" for key, v in table.items() if v is not None]
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
