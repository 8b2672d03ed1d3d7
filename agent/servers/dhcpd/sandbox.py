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
from agent.servers.dhcpd import lexer
from agent.servers.dhcpd.workdir import inside_target, relative_refusal
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
    problems = outside_includes(stage, target, dhcpd.config, read_only)
    if not problems:
        problems = run_dhcpd_t(stage, target, dhcpd, read_only)
    if problems:
        for_repo = [_with_source(p, target, sources) for p in problems]
        raise ValidateError(f"refused: {len(for_repo)} problem(s) in the config", for_repo)


def _listed(path: str, read_only: Sequence[Path]) -> bool:
    """A path the node lists in [policy] read_only, or one below a listed folder: the
    sandbox shows dhcpd those and nothing else."""
    parts = Path(path).parts
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
    problems = parse_errors(result.stderr + result.stdout, str(config))
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


def parse_errors(output: str, config: str = "") -> list[Problem]:
    """dhcpd's `FILE line N: message`, the echoed line and its caret, as Problems.

    config: the main config file's path, the place of an error dhcpd names no file for.
    """
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
    return problems or _unlocated(lines, config)


def meaningful(lines: list[str]) -> list[str]:
    """dhcpd's output without its banner and its "if you think this is a bug" text."""
    return [ln for ln in lines if ln.strip() and not ln.startswith(_NOISE)]


# Lines of dhcpd's start-up that say what it reads, not what is wrong.
_BANNER = ("Config file: ", "Database file: ", "PID file: ")


def _unlocated(lines: list[str], config: str) -> list[Problem]:
    """Errors without a line, such as "Can't open /etc/dhcp/x.conf: No such file".

    dhcpd prints the causes of some before them: "ERROR: Failover peer, f, has no
    referring pools. ...", then "Failover configuration sanity check failed". The
    last line is kept with those causes (in its message, which every output format
    shows, and as its context), in the main config file, the file dhcpd was reading.
    """
    said = [ln.strip() for ln in meaningful(lines) if not ln.startswith(_BANNER)]
    opened = [ln for ln in said if ln.startswith("Can't open ")]
    if opened:
        return [Problem(_file_in(ln) or config, None, ln) for ln in opened]
    if not said:
        return []
    *causes, last = said
    errors = [c for c in causes if not c.lower().startswith("warning")]
    message = f"{last}: {' '.join(errors)}" if errors else last
    return [Problem(_file_in(last) or config, None, message, tuple(causes))]


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


def outside_includes(
    stage: Path, target: Path, config: str, read_only: Sequence[Path] = ()
) -> list[Problem]:
    """Includes that leave the config directory, following includes from the main file.

    dhcpd echoes the offending line of a file it cannot parse, so
    `include "/etc/shadow";` would put that file into our error reports. Paths are
    read as dhcpd opens them, and one written with a backslash or a NUL byte is
    refused outright: escapes are where a reader that is not dhcpd's goes wrong.
    An include of a [policy] read_only path is not refused (nor followed: it is no
    part of the tree).
    """
    problems: list[Problem] = []
    seen: set[str] = set()
    todo = [config]
    while todo:
        rel = todo.pop()
        if rel in seen or not (stage / rel).is_file():
            continue
        seen.add(rel)
        data = (stage / rel).read_bytes()
        for string in includes(data):
            inside = inside_target(string.c_string, str(target))
            refusal = _refusal(data[string.start : string.end], string.c_string, inside, target,
                               read_only)  # fmt: skip
            if refusal is not None:
                problems.append(Problem(str(target / rel), string.line, refusal))
            elif inside is not None:
                todo.append(inside)
    return problems


def includes(data: bytes) -> Iterator[lexer.Token]:
    """The path string of each `include "path";` in a dhcpd.conf file, comments skipped.

    dhcpd reads keywords in any case: `INCLUDE "/etc/shadow";` is an include too.
    Wider than dhcpd, to miss none: `x.include "p"` counts (dhcpd reads the name
    `include` after the dot), and so does an include with a NUL byte (a token dhcpd
    can lose as it reads ahead) or a 0xFF byte before its string.
    """
    if b"include" not in data.lower():
        # No word "include", so no include statement: a hosts file of 50,000
        # declarations is not tokenized in Python (seconds) before dhcpd -t.
        return
    keyword = False  # the last token read is the name include
    for span in lexer.spans(data):
        if span.kind == "string":
            if keyword:
                yield span
            keyword = False
        elif span.kind == "code" and span.value.strip(_PASSED):
            keyword = _ends_in_include(data, span)


# Whitespace, and the NUL and 0xFF bytes that may stand between include and its string.
_PASSED = " \t\n\v\f\r\0\udcff"


def _ends_in_include(data: bytes, code: lexer.Token) -> bool:
    if code.value.rstrip(_PASSED)[-7:].lower() != "include":
        return False  # the cheap test first: most code ends in ; { or }
    read = [t for t in lexer.code_tokens(data, code) if t.kind != "end" and t.value != "\0"]
    return read[-1].kind == "name" and lexer.last_name(read[-1].value).lower() == "include"


def _refusal(
    written: bytes, path: str, inside: str | None, target: Path, read_only: Sequence[Path]
) -> str | None:
    """Why an include is refused (its string as written and as dhcpd reads it), or None."""
    if b"\\" in written or b"\0" in written:
        return (
            f"include {_as_written(written)}: a backslash or NUL byte in an include path is "
            "refused (dhcpd reads escapes and stops at a NUL): write the path plainly"
        )
    relative = relative_refusal(path, str(target))
    if relative is not None:
        return relative
    if inside is None and not _listed(path, read_only):
        return f'include "{path}" is outside {target}: refused'
    return None


def _as_written(written: bytes) -> str:
    """A string as written, its NUL and other unprintable bytes as escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in lexer.decoded(written))
