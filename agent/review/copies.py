"""A copy of one server's /etc/dhcp, read for `dhcp-gitops import`: every file, then
what the server software makes of them (agent.servers.base.Importer.read).

A copy that cannot become a repo (a link, a .git folder, no main file) is refused
here, before anything is written.
"""

from __future__ import annotations

from pathlib import Path

from agent import tree
from agent.engine import render
from agent.errors import DhcpGitopsError, RenderError, UsageError
from agent.servers.base import Copy, Importer


def read_copy(folder: Path, role: str, main: str, importer: Importer) -> Copy:
    files = read_tree(folder)
    if main not in files:
        raise UsageError(f"{folder}: no {main} (the main config; see --config-file)")
    return importer.read(files, role, str(folder))


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
