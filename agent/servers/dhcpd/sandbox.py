"""Validation of a staged tree: our include check, then the real `dhcpd -t`.

dhcpd resolves absolute includes against the live tree, so checking the stage
in place would read the live includes. dhcpd runs instead in a private mount
namespace where the stage is bound over the target: it reads exactly the
staged bytes at the paths they will have live. Never `-q`: it hides errors.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from agent import process
from agent.config import Dhcpd
from agent.errors import CommandError, Problem, ValidateError
from agent.servers.dhcpd.conf import inside_target, tokens

# Binds $1 over $2 in the new mount namespace, enters $2 (relative includes
# resolve against the working directory, as for the supervised dhcpd), runs the rest.
_BIND_AND_RUN = 'mount --bind "$1" "$2" && cd "$2" && shift 2 && exec "$@"'

TIMEOUT = 300.0  # seconds: 50,000 host declarations parse in well under that


def validate(stage: Path, target: Path, dhcpd: Dhcpd, sources: Mapping[str, str]) -> None:
    """Raise ValidateError naming file and line if the staged tree would not load."""
    problems = outside_includes(stage, target, dhcpd.config)
    if not problems:
        problems = run_dhcpd_t(stage, target, dhcpd)
    if problems:
        for_repo = [_with_source(p, target, sources) for p in problems]
        raise ValidateError(f"refused: {len(for_repo)} problem(s) in the config", for_repo)


def namespace_argv(stage: Path, target: Path, argv: list[str]) -> list[str]:
    """argv run with the stage bound over the target, seen by that process alone."""
    unshare = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        unshare.append("--map-root-user")  # CI runners: a user namespace grants the mount
    return [
        *unshare,
        "--",
        "sh",
        "-c",
        _BIND_AND_RUN,
        "dhcp-gitops",
        str(stage),
        str(target),
        *argv,
    ]


def run_dhcpd_t(stage: Path, target: Path, dhcpd: Dhcpd) -> list[Problem]:
    config = target / dhcpd.config
    argv = namespace_argv(stage, target, [dhcpd.binary, "-t", "-cf", str(config)])
    try:
        result = process.run(argv, timeout=TIMEOUT, check=False)
    except CommandError as err:
        return [Problem(str(config), None, f"could not run dhcpd -t: {err.message}")]
    if result.returncode == 0:
        return []
    problems = parse_errors(result.stderr + result.stdout)
    return problems or [Problem(str(config), None, _last_words(result.stderr, result.returncode))]


_LOCATED = re.compile(r"^(?P<file>/.*?) line (?P<line>\d+): (?P<message>.*)$")
_CARET = re.compile(r"^\s*\^\s*$")
_NOISE = (
    "Internet Systems Consortium",
    "Copyright",
    "All rights reserved",
    "For info, please visit",
    "Configuration file errors encountered",
    "If you think you have received",
    "than a configuration issue",
    "bugs on either our web page",
    "before submitting a bug",
    "process and the information",
    "exiting.",
    "Ldap",
    "Wrote ",
)


def parse_errors(output: str) -> list[Problem]:
    """dhcpd's `FILE line N: message`, the echoed line and its caret, as Problems."""
    problems: list[Problem] = []
    lines = output.splitlines()
    i = 0
    while i < len(lines):
        found = _LOCATED.match(lines[i])
        i += 1
        if not found:
            continue
        context: list[str] = []
        while i < len(lines) and len(context) < 2 and not _LOCATED.match(lines[i]):
            context.append(lines[i])
            i += 1
            if _CARET.match(context[-1]):
                break
        problems.append(
            Problem(found["file"], int(found["line"]), found["message"], tuple(context))
        )
    return problems or _unlocated(lines)


def meaningful(lines: list[str]) -> list[str]:
    """dhcpd's output without its banner and its "if you think this is a bug" text."""
    return [ln for ln in lines if ln.strip() and not ln.startswith(_NOISE)]


def _unlocated(lines: list[str]) -> list[Problem]:
    """Errors without a line, such as "Can't open /etc/dhcp/x.conf: No such file"."""
    said = meaningful(lines)
    opened = [ln for ln in said if ln.startswith("Can't open ")]
    chosen = opened or said[-1:]
    return [Problem(_file_in(ln), None, ln.strip()) for ln in chosen]


def _file_in(line: str) -> str:
    found = re.search(r"(/\S+?):", line)
    return found.group(1) if found else ""


def _last_words(stderr: str, returncode: int) -> str:
    lines = meaningful(stderr.splitlines())
    return lines[-1] if lines else f"dhcpd -t exited with {returncode}"


def _with_source(problem: Problem, target: Path, sources: Mapping[str, str]) -> Problem:
    rel = posixpath.relpath(problem.file, str(target)) if problem.file.startswith("/") else ""
    source = sources.get(rel)
    return Problem(problem.file, problem.line, problem.message, problem.context, source)


# --- includes ---------------------------------------------------------------


def outside_includes(stage: Path, target: Path, config: str) -> list[Problem]:
    """Includes that leave the config directory, following includes from the main file.

    dhcpd echoes the offending line of a file it cannot parse, so
    `include "/etc/shadow";` would put that file into our error reports.
    """
    problems: list[Problem] = []
    seen: set[str] = set()
    todo = [config]
    while todo:
        rel = todo.pop()
        if rel in seen or not (stage / rel).is_file():
            continue
        seen.add(rel)
        text = (stage / rel).read_bytes().decode("utf-8", "replace")
        for line, path in includes(text):
            inside = inside_target(path, str(target))
            if inside is None:
                message = f'include "{path}" is outside {target}: refused'
                problems.append(Problem(str(target / rel), line, message))
            else:
                todo.append(inside)
    return problems


def includes(text: str) -> Iterator[tuple[int, str]]:
    """(line, path) of each `include "path";` in dhcpd.conf text, comments skipped.

    dhcpd reads keywords in any case: `INCLUDE "/etc/shadow";` is an include too.
    """
    if "include" not in text.lower():
        # No word "include", so no include statement: a hosts file of 50,000
        # declarations is not tokenized in Python (seconds) before dhcpd -t.
        return
    previous_word = ""
    for line, kind, value in tokens(text):
        if kind == "string" and previous_word == "include":
            yield line, value
        previous_word = value.lower() if kind == "word" else ""
