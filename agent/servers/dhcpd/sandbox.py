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

import functools
import os
import posixpath
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from agent import process
from agent.config import Dhcpd
from agent.errors import CommandError, Problem, SandboxError, ValidateError
from agent.servers.dhcpd.conf import inside_target, tokens

TIMEOUT = 300.0  # seconds: 50,000 host declarations parse in well under that
BWRAP = "bwrap"  # found on PATH, as every tool the agent runs
# nobody: dhcpd -t is no one in its sandbox. Run by root, bwrap maps it to root outside,
# so dhcpd reads what root may of what it is shown, as live, with no capability.
UID = 65534
# The loader reads its cache to find libraries outside its default folders.
LOADER_CACHE = "/etc/ld.so.cache"


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
            raise _no_sandbox(f"{BWRAP} not found", [INSTALL]) from err
        return [Problem(str(config), None, f"could not run dhcpd -t: {err.message}")]
    if result.returncode == 0:
        return []
    _check_it_ran(result)
    problems = parse_errors(result.stderr + result.stdout)
    return problems or [Problem(str(config), None, _last_words(result.stderr, result.returncode))]


# --- the sandbox -------------------------------------------------------------


def sandbox_argv(
    stage: Path, target: Path, argv: list[str], read_only: Sequence[Path] = ()
) -> list[str]:
    """argv (argv[0] an absolute path) run by bwrap where only argv[0] and what it needs
    to start, the read_only paths and the stage (read-only, at the target) exist."""
    mounts = [m for path in _startup_files(argv[0]) for m in _shown(path, "--ro-bind")]
    mounts += _shown(LOADER_CACHE, "--ro-bind-try")
    # --ro-bind-try: a read_only path missing here is missing in the sandbox too.
    mounts += [m for path in read_only for m in _shown(str(path), "--ro-bind-try")]
    # Last, so that the stage is the target even where a read_only path lies inside it.
    links, real_target = _walk(str(target))
    mounts += [*links, ("--ro-bind", str(stage), real_target)]
    return [
        BWRAP,
        # Every namespace (user, network, pid, ipc, uts, cgroup), the user namespace a
        # must (--unshare-all only tries it). Not --disable-userns: it writes /proc/sys,
        # read-only under systemd's ProtectKernelTunables and in containers.
        *("--unshare-all", "--unshare-user"),
        *("--die-with-parent", "--new-session", "--clearenv", "--cap-drop", "ALL"),
        *("--uid", str(UID), "--gid", str(UID)),
        *(word for mount in dict.fromkeys(mounts) for word in mount),
        *("--remount-ro", "/"),  # the sandbox's own root too: nothing in it is writable
        # Debian's service starts dhcpd from /: relative includes resolve there, and fail.
        *("--chdir", "/", "--"),
        *argv,
    ]


Mount = tuple[str, str, str]  # a bwrap option and its two arguments


def _shown(path: str, how: str) -> list[Mount]:
    """A host path shown at the same path: the symbolic links on the way (Debian's
    /lib -> usr/lib, say), then the file itself."""
    links, real = _walk(path)
    return [*links, (how, real, real)]


def _walk(path: str) -> tuple[list[Mount], str]:
    """The symbolic links met resolving path, as bwrap makes them, and the real path."""
    links: list[Mount] = []
    real, todo = Path("/"), _parts(str(Path(path).absolute()))
    while todo:
        part = todo.pop(0)
        here = real.parent if part == ".." else real / part
        if not here.is_symlink():
            real = here
            continue
        if len(links) >= _MAX_LINKS:
            raise SandboxError(f"{path}: too many levels of symbolic links")
        written = str(here.readlink())
        links.append(("--symlink", written, str(here)))
        real = Path("/") if written.startswith("/") else real
        todo = _parts(written) + todo
    return links, str(real)


def _parts(path: str) -> list[str]:
    return [part for part in Path(path).parts if part != "/"]


_MAX_LINKS = 40  # as the kernel's ELOOP


def _startup_files(binary: str) -> tuple[str, ...]:
    """What binary needs to start: itself, a script's interpreter, and the ELF
    interpreter (the loader) and shared libraries of each."""
    st = Path(binary).stat()
    return _needed(binary, st.st_ino, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _needed(binary: str, inode: int, mtime_ns: int) -> tuple[str, ...]:
    """_startup_files without the cache; kept per binary as it is on disk (ldd takes
    longer than dhcpd -t on a small config)."""
    files = [binary]
    interpreter = _interpreter(binary)
    if interpreter is not None:
        files += _startup_files(interpreter)
    return (*files, *_libraries(binary))


def _interpreter(path: str) -> str | None:
    """The program a `#!` script names (its first word), or None for any other file."""
    with Path(path).open("rb") as file:
        head = file.read(256)
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    return os.fsdecode(words[0]) if words else None


_LIBRARY = re.compile(r"(/\S+) \(0x[0-9a-f]+\)$")


def _libraries(binary: str) -> list[str]:
    """The ELF interpreter and shared libraries ldd finds for binary: none for a static
    binary or a script (ldd: "not a dynamic executable")."""
    try:
        listed = process.run(["ldd", binary], check=False).stdout
    except CommandError as err:
        raise SandboxError(f"cannot list what {binary} needs to start: {err.message}") from err
    return [m.group(1) for line in listed.splitlines() if (m := _LIBRARY.search(line.strip()))]


def _binary(binary: str) -> str:
    """[dhcpd] binary as an absolute path: missing, it is this machine's fault."""
    found = shutil.which(binary)
    if found is None:
        raise SandboxError(f"{binary} not found: install isc-dhcp-server or set [dhcpd] binary")
    return str(Path(found).absolute())


# What to grant a machine that cannot make the sandbox.
INSTALL = "install bubblewrap 0.8 or later (apt-get install bubblewrap)"
NAMESPACES = (
    "enable user namespaces (sysctl kernel.unprivileged_userns_clone=1 where that sysctl "
    "exists, and user.max_user_namespaces above 0; a systemd unit's RestrictNamespaces= "
    "or a container's seccomp profile must allow user, mnt, net, pid, ipc and uts)"
)
AS_ROOT = "run the agent as root"


def _check_it_ran(result: process.Completed) -> None:
    """SandboxError if bwrap could not make the sandbox, or dhcpd not start in it: bwrap
    says "bwrap: ..." first, a loader or a wrapper script that misses a file exits 127.
    dhcpd's own output starts with its banner, and it exits 1."""
    first = (result.stderr.strip().splitlines() or [""])[0]
    if result.returncode == process.NOT_FOUND:
        raise SandboxError(f"dhcpd -t cannot start in its sandbox: {first}")
    if first.startswith("bwrap: "):
        too_old = "Unknown option" in first
        raise _no_sandbox(first, [INSTALL] if too_old else _namespace_grants())


def _namespace_grants() -> list[str]:
    return [NAMESPACES] if os.geteuid() == 0 else [NAMESPACES, AS_ROOT]


def _no_sandbox(reason: str, grants: Sequence[str]) -> SandboxError:
    """The error for a machine that cannot run dhcpd -t in its sandbox: what to grant."""
    return SandboxError(f"dhcpd -t cannot run in its sandbox ({reason}): {'; or '.join(grants)}")


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
