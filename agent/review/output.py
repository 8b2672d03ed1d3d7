"""validate's findings for their readers: text lines, GitHub workflow annotations,
a GitLab code-quality report."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from agent.review.validate import Finding


def as_text(findings: Iterable[Finding]) -> str:
    return "".join(f"{_where(f)}: {f.severity}: [{f.role}] {f.message}\n" for f in findings)


def as_github(findings: Iterable[Finding]) -> str:
    """GitHub workflow commands: each finding annotates its file and line in the PR."""
    lines = []
    for f in findings:
        props = [f"file={_gh_prop(f.path)}"] if f.path else []  # no file: the run's annotation
        props += [f"line={f.problem.line}"] if f.path and f.problem.line else []
        props.append(f"title={_gh_prop('dhcp-gitops ' + f.role)}")
        lines.append(f"::{f.severity} {','.join(props)}::{_gh_data(f.message)}")
    return "".join(line + "\n" for line in lines)


def as_gitlab(findings: Iterable[Finding]) -> str:
    """A GitLab code-quality report (artifacts: reports: codequality)."""
    report = [
        {
            "description": f"[{f.role}] {f.message}",
            "check_name": "dhcp-gitops",
            "fingerprint": hashlib.sha256(f"{f.role}{f.path}{f.message}".encode()).hexdigest(),
            "severity": "major" if f.severity == "error" else "minor",
            "location": {"path": f.path, "lines": {"begin": f.problem.line or 1}},
        }
        for f in findings
    ]
    return json.dumps(report, indent=2) + "\n"


FORMATS = {"text": as_text, "github": as_github, "gitlab": as_gitlab}


def _where(f: Finding) -> str:
    return f"{f.path}:{f.problem.line}" if f.problem.line else f.path


def _gh_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_prop(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")
