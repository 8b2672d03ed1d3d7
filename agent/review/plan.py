"""`dhcp-gitops plan BASE HEAD`: what each server of the pair will get, for a PR comment.

Both revisions are rendered per role exactly as the agents would; the diff is
of the rendered files (what lands in /etc/dhcp), not of the repo, so a change
to pair.toml shows up as the failover lines it changes on each side. Changes
that hurt a running pair are called out as warnings.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from agent import tree
from agent.engine import render
from agent.engine.roles import roles_of, server_only_of
from agent.errors import RenderError
from agent.servers.base import Language
from agent.source.snapshot import Snapshot

MAX_DIFF_LINES = 400  # per file in the comment; the full diff is one `git diff` away


@dataclass
class RolePlan:
    role: str
    node: str
    diffs: dict[str, list[str]] = field(default_factory=dict)  # live path -> unified diff
    warnings: list[str] = field(default_factory=list)
    stand_ins: list[str] = field(default_factory=list)  # changed server-only files
    error: str | None = None  # HEAD does not render: the agents will refuse it

    @property
    def changed(self) -> bool:
        return bool(self.diffs) or self.error is not None


@dataclass
class Plan:
    base: str
    head: str
    pair: str
    roles: list[RolePlan]

    @property
    def changed(self) -> bool:
        return any(r.changed for r in self.roles)


def plan(
    before: Snapshot,
    after: Snapshot,
    pair: str,
    target: Path,
    language: Language,
    base: str,
    head: str,
) -> Plan:
    roles = []
    for role, node in roles_of(after, pair):
        roles.append(role_plan(before, after, pair, (role, node), str(target), language))
    return Plan(base=base, head=head, pair=pair, roles=roles)


def role_plan(
    before: Snapshot,
    after: Snapshot,
    pair: str,
    who: tuple[str, str],
    target: str,
    language: Language,
) -> RolePlan:
    """One role's diff and dangers; who is (role, node name)."""
    role, node = who
    result = RolePlan(role=role, node=node)
    try:
        new = render.render_pair(after, pair, role, node, target)
        server_only = server_only_of(after, pair)
    except RenderError as err:
        result.error = err.message
        return result
    try:
        old = render.render_pair(before, pair, role, node, target).files
    except RenderError:
        old = {}  # the base did not render (or the pair is new): everything is added
    result.diffs = diffs(old, new.files)
    result.stand_ins = [p for p in result.diffs if tree.matches(p, server_only)]
    result.warnings = language.dangers(old, new.files, target) if old else []
    return result


def diffs(old: dict[str, bytes], new: dict[str, bytes]) -> dict[str, list[str]]:
    changed = {}
    for path in sorted(old.keys() | new.keys()):
        if old.get(path) == new.get(path):
            continue
        a, b = _lines(old.get(path)), _lines(new.get(path))
        label_a = f"a/{path}" if path in old else "/dev/null"
        label_b = f"b/{path}" if path in new else "/dev/null"
        changed[path] = list(difflib.unified_diff(a, b, label_a, label_b, lineterm=""))
    return changed


def _lines(data: bytes | None) -> list[str]:
    return [] if data is None else data.decode("utf-8", "replace").splitlines()


# --- Markdown ---------------------------------------------------------------


def markdown(p: Plan) -> str:
    where = f" in `{p.pair}`" if p.pair else ""
    out = [f"## dhcp-gitops plan: `{p.base[:12]}` → `{p.head[:12]}`{where}", ""]
    if not p.changed:
        return "\n".join([*out, "No server's /etc/dhcp changes.", ""])
    for r in p.roles:
        out += _role_markdown(r)
    return "\n".join(out)


def _role_markdown(r: RolePlan) -> list[str]:
    title = f"### {r.role} ({r.node})"
    if r.error:
        return [title, "", f"**Does not render; the agent will refuse it:** {r.error}", ""]
    if not r.diffs:
        return [title, "", "No change.", ""]
    out = [title, "", f"{len(r.diffs)} file(s) change: " + ", ".join(f"`{f}`" for f in r.diffs)]
    out += [""] + [f"> **Warning:** {w}" for w in r.warnings] + ([""] if r.warnings else [])
    out += [f"> `{p}` is a stand-in (pair.toml `server_only`): the servers keep their own, "
            "so this change is not deployed." for p in r.stand_ins]  # fmt: skip
    out += [""] if r.stand_ins else []
    for path, diff in r.diffs.items():
        out += _details(path, diff)
    return out


def _details(path: str, diff: list[str]) -> list[str]:
    shown = diff[:MAX_DIFF_LINES]
    more = len(diff) - len(shown)
    body = ["```diff", *shown, "```"] + ([f"… {more} more lines"] if more else [])
    return ["<details><summary><code>" + path + "</code></summary>", "", *body, "</details>", ""]
