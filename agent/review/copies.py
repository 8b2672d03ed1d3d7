"""A copy of one server's /etc/dhcp, read for `dhcp-gitops import`: its files, and what
they declare (the failover peer, key secrets, includes the agent would refuse).

A copy that cannot become a repo (a link, a second failover peer) is refused
here, before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent import tree
from agent.engine import render
from agent.errors import DhcpGitopsError, RenderError, UsageError
from agent.servers.dhcpd import conf
from agent.servers.dhcpd.conf import Failover, OutsideInclude
from agent.servers.dhcpd.lift import at, holds_secret
from agent.servers.dhcpd.proof import Copy


@dataclass(frozen=True)
class Side(Copy):
    """One server's copy: its files (paths relative to the target) and what they declare."""

    folder: Path
    outside: tuple[OutsideInclude, ...]  # includes the agent would refuse


def read_side(folder: Path, role: str, main: str, target: Path) -> Side:
    files = read_tree(folder)
    if main not in files:
        raise UsageError(f"{folder}: no {main} (the main config; see --config-file)")
    parsed = conf.parse(files, main, str(target))
    failover = _the_failover(parsed.failovers, folder, role)
    secrets = tuple(rel for rel, data in files.items() if holds_secret(data))
    if failover.where.file in secrets:
        raise DhcpGitopsError(
            f"{folder / failover.where.file} holds both the failover declaration and a key "
            "secret: move the key statement into a file of its own (e.g. dhcpd.keys, "
            "included from it) on the server, then import again"
        )
    return Side(role, files, failover, secrets, folder=folder, outside=parsed.includes_outside)


def read_tree(folder: Path) -> dict[str, bytes]:
    """Every file below the folder. The agent replaces the whole target, so every file
    must reach the repo; links and special files cannot, and the agent refuses them."""
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder: give a copy of a server's /etc/dhcp")
    return {rel: _regular_file(folder, rel, path) for rel, path in tree.files(folder)}


def _regular_file(folder: Path, rel: str, path: Path) -> bytes:
    if path.is_symlink():
        raise DhcpGitopsError(
            f"{path}: symbolic link (to {str(path.readlink())!r}) refused: the agent "
            "deploys regular files only; put a copy of the file it points to in its place"
        )
    if not path.is_file():
        raise DhcpGitopsError(f"{path}: not a regular file (a socket, fifo or device): refused")
    if ".git" in Path(rel).parts:
        raise DhcpGitopsError(
            f"{path}: a .git folder cannot go into a repo: remove it from the copy"
        )
    try:
        render.check_name(rel)
    except RenderError as err:
        raise DhcpGitopsError(f"{folder}: {err.message}") from err
    return path.read_bytes()


def _the_failover(found: Sequence[Failover], folder: Path, role: str) -> Failover:
    """pair.toml describes one failover peer; the copy must declare it for this role."""
    if not found:
        raise DhcpGitopsError(
            f"{folder}: no failover peer declaration in the main config or the files it "
            "includes: import adopts a failover pair"
        )
    if len(found) > 1:
        said = ", ".join(f'"{f.name}" ({at(f)})' for f in found)
        raise DhcpGitopsError(f"{folder} declares {len(found)} failover peers ({said}): "
                              "import adopts a pair with one")  # fmt: skip
    failover = found[0]
    if failover.role != role:
        said = f'"{failover.role};"' if failover.role else 'neither "primary;" nor "secondary;"'
        raise DhcpGitopsError(f"{folder}: failover peer \"{failover.name}\" ({at(failover)}) "
                              f"says {said}, but this copy is imported as the {role}")  # fmt: skip
    return failover
