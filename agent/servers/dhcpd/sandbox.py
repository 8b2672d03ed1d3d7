"""Validation of a staged tree: our include check, then the real `dhcpd -t` in a sandbox.

dhcpd resolves absolute includes against the live tree, so checking the stage
in place would read the live includes. dhcpd runs instead in bubblewrap's
sandbox (bwrap), where the stage is bound read-only at the target: it reads
exactly the staged bytes at the paths they will have live. Nothing else of the
host is there but the dhcpd binary with what it needs to start (its ELF
interpreter, its shared libraries, /etc/ld.so.cache) and the node's
`[policy] read_only` paths: an include that slips past our check (dhcpd reads
C escapes) finds no /etc/passwd to echo into /status. No network, no devices,
no /proc, and dhcpd is uid 65534 without capabilities in a user namespace of
its own. Never `-q`: it hides errors.
"""

from __future__ import annotations

import posixpath
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from agent import process
from agent.config import Dhcpd
from agent.errors import CommandError, Problem, SandboxError, ValidateError
from agent.servers.dhcpd.conf import inside_target, tokens
from agent.servers.sandbox import BWRAP, INSTALL, check_it_ran, no_sandbox, sandbox_argv

TIMEOUT = 300.0  # seconds: 50,000 host declarations parse in well under that


def validate(
    stage: Path,
    target: Path,
    dhcpd: Dhcpd,
    sources: Mapping[str, str],
    read_only: Sequence[Path] = (),
) -> None:
    """Raise ValidateError naming file and line if the staged tree would not load;
    SandboxError if this machine cannot run dhcpd -t in its sandbox."""
    problems = _consented(outside_includes(stage, target, dhcpd.config), target, read_only)
    if not problems:
        problems = run_dhcpd_t(stage, target, dhcpd, read_only)
    if problems:
        for_repo = [_with_source(p, target, sources) for p in problems]
        raise ValidateError(f"refused: {len(for_repo)} problem(s) in the config", for_repo)


def _consented(problems: list[Problem], target: Path, read_only: Sequence[Path]) -> list[Problem]:
    """The include check's refusals, less includes of a path the node lists in
    [policy] read_only (or of one below a listed folder): the sandbox shows dhcpd
    those and nothing else. Read from the refusal's words, so a check that words it
    otherwise keeps refusing."""
    return [p for p in problems if not _listed(_refused_include(p, target), read_only)]


def _refused_include(problem: Problem, target: Path) -> str | None:
    prefix, suffix = 'include "', f'" is outside {target}: refused'
    message = problem.message
    if message.startswith(prefix) and message.endswith(suffix):
        return message[len(prefix) : -len(suffix)]
    return None


def _listed(path: str | None, read_only: Sequence[Path]) -> bool:
    parts = Path(path).parts if path else ()
    return ".." not in parts and any(parts[: len(p.parts)] == p.parts for p in read_only)


def run_dhcpd_t(
    stage: Path, target: Path, dhcpd: Dhcpd, read_only: Sequence[Path] = ()
) -> list[Problem]:
    """dhcpd -t on the stage seen at the target, in the sandbox: its problems, if any."""
    config = target / dhcpd.config
    argv = sandbox_argv(
        stage,
        target,
        [_binary(dhcpd.validate_binary or dhcpd.binary), "-t", "-cf", str(config)],
        read_only,
    )
    try:
        result = process.run(argv, timeout=TIMEOUT, check=False)
    except CommandError as err:
        if err.returncode == process.NOT_FOUND:
            raise no_sandbox("dhcpd -t", f"{BWRAP} not found", [INSTALL]) from err
        return [Problem(str(config), None, f"could not run dhcpd -t: {err.message}")]
    if result.returncode == 0:
        return []
    check_it_ran(result, "dhcpd -t")
    problems = parse_errors(result.stderr + result.stdout)
    return problems or [Problem(str(config), None, _last_words(result.stderr, result.returncode))]


# --- the sandbox -------------------------------------------------------------


def _binary(binary: str) -> str:
    """[dhcpd] binary as an absolute path: missing, it is this machine's fault."""
    found = shutil.which(binary)
    if found is None:
        raise SandboxError(f"{binary} not found: install isc-dhcp-server or set [dhcpd] binary")
    return str(Path(found).absolute())


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
    # "Can't open hosts.conf: ..." names a relative include (resolved against /) as written.
    found = re.match(r"Can't open (.+?): ", line.strip()) or re.search(r"(/\S+?):", line)
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
