"""Validation of a staged Kea tree: our include check, then the real `kea-dhcp4 -t`.

kea-dhcp4 runs in the sandbox every validator runs in (agent/servers/sandbox.py:
only the stage, at the target's path, and what kea-dhcp4 needs, here also the
folders of the hook libraries the config loads), in a network namespace of its own holding a
link for each interface the config names: `kea-dhcp4 -t` refuses a config
whose interfaces the machine lacks, and a config written for the servers'
eth0 must validate in CI too. (Dummy links need a kernel module containers
lack; a veth pair works everywhere namespaces do.) Never does anything of
the host's network change: the namespace goes when kea-dhcp4 exits.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from agent import process, tree
from agent.config import Kea
from agent.errors import CommandError, Problem, SandboxError, ValidateError
from agent.servers.kea import conf, jsonc
from agent.servers.sandbox import check_it_ran, sandbox_argv, startup_files

TIMEOUT = 300.0  # seconds: 10,000 reservations take 0.2 s (Kea 2.2)
LINKS_FAILED = 125  # _LINKS_AND_RUN's exit when `ip` could not make a link
# A Linux interface name: at most 15 bytes, no '/' or space (a Kea entry may add
# "/ADDRESS", which the link then gets).
_IFNAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")

# Runs in a fresh network namespace: $1 links to make, each "NAME [ADDRESS...]",
# then exec the rest. The veth's other end is named by its index.
_LINKS_AND_RUN = (
    'n=$1; shift; i=0; while [ "$i" -lt "$n" ]; do '
    'entry=$1; shift; set -f; set -- $entry "$@"; name=$1; shift; '
    'ip link add "$name" type veth peer name "dgk-peer$i" || exit 125; '
    'while [ "$1" != "--" ]; do ip addr add "$1/32" dev "$name" || exit 125; shift; done; '
    'shift; i=$((i + 1)); done; exec "$@"'
)


def validate(stage: Path, target: Path, kea: Kea, sources: Mapping[str, str]) -> None:
    """ValidateError naming file and line if the staged tree would not load."""
    files = {rel: path.read_bytes() for rel, path in tree.files(stage)}
    problems = include_problems(files, kea.config, str(target))
    if not problems:
        parsed = conf.parse(files, kea.config, str(target))
        hooks = parsed.libraries if parsed else ()
        problems = run_kea_t(stage, target, kea, _links(parsed), hooks)
    if problems:
        located = [_with_source(p, target, sources) for p in problems]
        raise ValidateError(f"refused: {len(located)} problem(s) in the config", located)


def include_problems(files: Mapping[str, bytes], main: str, target: str) -> list[Problem]:
    """Includes that are relative or leave the target, following includes from main.

    Kea echoes no line of a file it cannot parse, but its positions would still
    name a file outside the tree; relative includes resolve against Kea's working
    directory, which differs between validation and service.
    """
    problems: list[Problem] = []
    seen: set[str] = set()
    todo = [main]
    while todo:
        rel = todo.pop()
        if rel in seen or rel not in files:
            continue
        seen.add(rel)
        for line, path in jsonc.includes(files[rel].decode("utf-8", "replace")):
            refused = jsonc.include_problem(path, target)
            if refused is not None:
                problems.append(Problem(posixpath.join(target, rel), line, refused))
            else:
                todo.append(jsonc.inside(path, target) or "")
    return problems


def _links(parsed: conf.KeaConf | None) -> list[str]:
    """Each interface the config names, with the addresses it must have: arguments
    "NAME [ADDRESS...] --" for _LINKS_AND_RUN. Names that are no Linux interface
    name are left to kea-dhcp4 to refuse."""
    links: dict[str, list[str]] = {}
    for entry in parsed.interfaces if parsed else ():
        name, _, address = entry.partition("/")
        if name in ("*", "lo") or not _IFNAME.match(name):
            continue
        addresses = links.setdefault(name, [])
        if address and _is_ipv4(address) and address not in addresses:
            addresses.append(address)
    return [" ".join((name, *addresses, "--")) for name, addresses in links.items()]


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def contained(
    stage: Path, target: Path, links: list[str], argv: list[str], hooks: Sequence[str] = ()
) -> list[str]:
    """argv in the validators' sandbox, in a network namespace holding links.

    The network namespace is the outer layer, made before the sandbox, which keeps
    it (--share-net): `ip` runs outside the sandbox, kea-dhcp4 alone inside. The
    hook libraries' folders are shown read-only (kea-dhcp4 -t checks that each
    exists, and loads them), with the libraries each needs in turn.
    """
    shown = sorted({Path(f) for h in _present(hooks) for f in startup_files(h)})
    folders = sorted({Path(h).parent for h in hooks if h.startswith("/")})
    sandboxed = sandbox_argv(stage, target, argv, [*folders, *shown], share_net=True)
    net = ["unshare", "--net"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    return [*net, "--", "sh", "-c", _LINKS_AND_RUN, "dhcp-gitops-links", str(len(links)),
            *links, *sandboxed]  # fmt: skip


def _present(hooks: Sequence[str]) -> list[str]:
    """The hook libraries that exist here; a missing one is kea-dhcp4's to name."""
    return [h for h in hooks if h.startswith("/") and Path(h).is_file()]


def run_kea_t(
    stage: Path, target: Path, kea: Kea, links: list[str], hooks: Sequence[str] = ()
) -> list[Problem]:
    """kea-dhcp4 -t on the stage seen at the target: its problems, if any. A machine
    that cannot run it there (no kea-dhcp4, no namespaces) raises SandboxError."""
    config = target / kea.config
    wanted = kea.validate_binary or kea.binary
    binary = shutil.which(wanted)
    if binary is None:
        raise SandboxError(f"{wanted} not found: install kea-dhcp4-server or set [kea] binary")
    argv = contained(stage, target, links, [binary, "-t", str(config)], hooks)
    try:
        result = process.run(argv, timeout=TIMEOUT, check=False)
    except CommandError as err:
        raise SandboxError(f"kea-dhcp4 -t cannot run here: {err.message}") from err
    if result.returncode == 0:
        return []
    if result.returncode == LINKS_FAILED:
        said = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise SandboxError(f"the sandbox could not make the config's interfaces: {said}")
    check_it_ran(result, "kea-dhcp4 -t")
    return parse_errors(result.stdout + "\n" + result.stderr, str(config))


# Kea's two forms: a syntax error "FILE:LINE.COL-COL: msg" after "Syntax check
# failed with: ", and a semantic one "Error encountered: msg (FILE:LINE:COL)".
_SYNTAX = re.compile(
    r"^Syntax check failed with: (?P<file>[^:]+):(?P<line>\d+)\.[\d-]+: (?P<msg>.*)$"
)
_POSITION = re.compile(r" \((?P<file>[^():]+):(?P<line>\d+):\d+\)")


def parse_errors(output: str, config: str) -> list[Problem]:
    """kea-dhcp4 -t's error lines as Problems; its last words when it says none."""
    problems: list[Problem] = []
    for line in output.splitlines():
        syntax = _SYNTAX.match(line)
        if syntax:
            problems.append(Problem(syntax["file"], int(syntax["line"]), syntax["msg"]))
        elif line.startswith("Error encountered: "):
            problems.append(_semantic(line.removeprefix("Error encountered: "), config))
    if problems:
        return problems
    said = [ln for ln in output.splitlines() if ln.strip() and " INFO " not in ln]
    return [Problem(config, None, said[-1] if said else "kea-dhcp4 -t failed without a word")]


def _semantic(text: str, config: str) -> Problem:
    """The innermost position (the first one Kea gives) is the value at fault."""
    positions = list(_POSITION.finditer(text))
    message = _POSITION.sub("", text).strip()
    if not positions:
        return Problem(config, None, message)
    first = positions[0]
    return Problem(first["file"], int(first["line"]), message)


def _with_source(problem: Problem, target: Path, sources: Mapping[str, str]) -> Problem:
    file = problem.file if problem.file.startswith("/") else str(target / problem.file)
    rel = posixpath.relpath(file, str(target))
    return Problem(file, problem.line, problem.message, problem.context, sources.get(rel))
