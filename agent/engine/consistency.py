"""The pair checks on the server itself: this node's render against its peer's.

Each agent holds the whole repo, so it renders the other role of the same
commit and refuses a commit the two servers would disagree on, before anything
restarts (docs/design.md, invariant 10). CI's `validate` makes the same checks;
here they hold when CI was skipped or bypassed. Warnings do not stop a deploy.
"""

from __future__ import annotations

from pathlib import Path

from agent.config import Limits, Role
from agent.engine import render
from agent.engine.roles import roles_of
from agent.errors import Problem, RenderError, ValidateError
from agent.servers.base import Language, is_warning, split_file
from agent.source.snapshot import Snapshot

PARTNER = {"primary": "secondary", "secondary": "primary"}


def check(
    language: Language,
    snapshot: Snapshot,
    pair: str,
    role: Role,
    mine: render.Rendered,
    target: Path,
    limits: Limits,
) -> None:
    """ValidateError naming file:line when the two roles of the commit disagree."""
    other = PARTNER.get(role)
    if other is None:
        return  # a standalone server has no partner to agree with
    rendered = {role: mine, other: _partner(snapshot, pair, other, target, limits)}
    problems = language.pair_problems({r: done.files for r, done in rendered.items()}, str(target))
    errors = _unique([_located(p, rendered, role, target) for p in problems if not is_warning(p)])
    if errors:
        raise ValidateError(
            f"refused: the two servers of the pair would disagree ({len(errors)} problem(s))",
            errors,
        )


def _partner(
    snapshot: Snapshot, pair: str, other: str, target: Path, limits: Limits
) -> render.Rendered:
    names = dict(roles_of(snapshot, pair))
    try:
        return render.render_pair(snapshot, pair, other, names.get(other, other), str(target),
                                  limits)  # fmt: skip
    except RenderError as err:
        raise ValidateError(
            f"refused: the {other}'s side of this commit does not render", err.problems
        ) from err


def _located(
    problem: Problem, rendered: dict[str, render.Rendered], me: str, target: Path
) -> Problem:
    """A pair Problem ("<role>:<path>") at its live path and repo file; the partner's
    side says whose it is, since only ours is on this server."""
    role, rel = split_file(problem.file)
    source = rendered[role].sources.get(rel) if role in rendered else None
    message = problem.message if role == me else f"(on the {role}) {problem.message}"
    return Problem(str(target / rel), problem.line, message, problem.context, source)


def _unique(problems: list[Problem]) -> list[Problem]:
    """A file both roles share (a common hosts.conf) is named once per finding."""
    seen: dict[tuple[str | None, int | None, str], Problem] = {}
    for p in problems:
        seen.setdefault((p.source or p.file, p.line, p.message), p)
    return list(seen.values())
