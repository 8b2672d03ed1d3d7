"""`dhcp-gitops validate`: a pair folder checked before it reaches any server.

Every role is rendered exactly as its agent would render it, the server's own
validator runs on each (`dhcpd -t`, in the same sandbox as on the servers),
then the pair checks that the server cannot make (it sees one config). Findings come out as
`file:line: message`, GitHub workflow annotations or a GitLab code-quality report.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent import tree
from agent.engine import render
from agent.engine.roles import roles_of
from agent.errors import Problem, RenderError, ValidateError
from agent.servers.base import WARNING, Language, is_warning, split_file
from agent.source.snapshot import Snapshot

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    role: str
    problem: Problem

    @property
    def severity(self) -> Severity:
        return "warning" if is_warning(self.problem) else "error"

    @property
    def path(self) -> str:
        return self.problem.source or self.problem.file

    @property
    def message(self) -> str:
        return self.problem.message.removeprefix(WARNING)


def check(snapshot: Snapshot, pair: str, target: Path, language: Language) -> list[Finding]:
    """Every finding for the pair folder: render, the server's validator per role, then
    the pair checks."""
    if not target.is_dir():
        missing = Problem(str(target), None, f"{target} does not exist here: {language.name} "
                          "reads includes at their live paths. Install the server's package "
                          "(it makes the folder) or name another folder with --target")  # fmt: skip
        return [Finding("all", missing)]
    findings: list[Finding] = []
    rendered: dict[str, render.Rendered] = {}
    for role, name in roles_of(snapshot, pair):
        try:
            rendered[role] = render.render_pair(snapshot, pair, role, name, str(target))
        except RenderError as err:
            findings += [Finding(role, p) for p in err.problems]
            continue
        findings += [Finding(role, p) for p in server_check(rendered[role], target, language)]
    return findings + pair_findings(rendered, target, language)


def server_check(rendered: render.Rendered, target: Path, language: Language) -> list[Problem]:
    """The server's own validator on one role's rendered tree, staged in a temporary dir."""
    with tempfile.TemporaryDirectory(prefix="dhcp-gitops-validate-") as tmp:
        stage = Path(tmp) / "stage"
        tree.write(stage, rendered.files)
        try:
            language.validate(stage, target, rendered.sources)
        except ValidateError as err:
            return err.problems
    return []


def pair_findings(
    rendered: dict[str, render.Rendered], target: Path, language: Language
) -> list[Finding]:
    """The checks the server cannot make: each side alone, then the two against each other."""
    files = {role: r.files for role, r in rendered.items()}
    problems = language.pair_problems(files, str(target))
    return _merged([_sourced(p, rendered) for p in problems])


def _sourced(problem: Problem, rendered: dict[str, render.Rendered]) -> Finding:
    """pair names files "<role>:<path in the target>"; annotations need the repo file."""
    role, rel = split_file(problem.file)
    source = rendered[role].sources.get(rel) if role in rendered else None
    located = Problem(rel, problem.line, problem.message, problem.context, source)
    return Finding(role, located)


def _merged(findings: list[Finding]) -> list[Finding]:
    """One finding for a line both roles share (a common hosts.conf), naming both roles."""
    merged: dict[tuple[str, int | None, str], Finding] = {}
    for f in findings:
        key = (f.path, f.problem.line, f.problem.message)
        seen = merged.get(key)
        merged[key] = f if seen is None else Finding(f"{seen.role}, {f.role}", f.problem)
    return list(merged.values())
