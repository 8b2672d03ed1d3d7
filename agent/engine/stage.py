"""The staging area beside the target: where a new tree is built and the old one kept.

    /etc/.dhcp.dhcp-gitops/stage      the tree being built and validated
    /etc/.dhcp.dhcp-gitops/previous   the tree that was live before the last deploy
    /etc/.dhcp.dhcp-gitops/exchanged  the digest of the tree last made live, until
                                      state.json records it (agent/engine/publish.py)

It sits next to the target because renameat2(RENAME_EXCHANGE) only swaps
directories on one filesystem, and outside it because dhcpd (and AppArmor's
profile for it) must see only the target.
"""

from __future__ import annotations

import logging
import os
import posixpath
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from agent import fault, tree
from agent.errors import RenderError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Workspace:
    target: Path

    @property
    def root(self) -> Path:
        return self.target.parent / f".{self.target.name}.dhcp-gitops"

    @property
    def stage(self) -> Path:
        return self.root / "stage"

    @property
    def previous(self) -> Path:
        return self.root / "previous"

    @property
    def journal(self) -> Path:
        return self.root / "exchanged"

    def prepare(self) -> None:
        if not self.root.is_dir():
            self.root.mkdir(mode=0o700)
            tree.fsync_dir(self.root.parent)  # durable before the journal is written in it
        tree.remove(self.stage)

    def clean_leftovers(self) -> bool:
        """Remove a stage a crashed run left behind; True if there was one."""
        if self.stage.exists() or self.stage.is_symlink():
            log.warning("removing a staging tree left by an interrupted run: %s", self.stage)
            tree.remove(self.stage)
            tree.fsync_dir(self.root)
            return True
        return False


def build(workspace: Workspace, files: dict[str, bytes], preserve: Iterable[str]) -> list[str]:
    """Write the rendered files into a fresh stage, then the preserved live files."""
    workspace.prepare()
    tree.write(workspace.stage, files, after_each=lambda: fault.point("during-render"))
    kept = copy_preserved(workspace.target, workspace.stage, preserve)
    # Power-loss view: every file was fsync'd as it was written (owner and mode
    # included); the folders' entries are made durable here, deepest first. Only
    # then may publish.swap_in journal and exchange the stage.
    tree.fsync_dirs(workspace.stage)
    return kept


def copy_preserved(live: Path, stage: Path, globs: Iterable[str]) -> list[str]:
    """Copy the live files that match `preserve` over the stage, mode and owner kept;
    a link as a link (one that stays inside the target: Debian's hook folders hold
    `debug -> ../debug`), and a preserved folder even when it is empty."""
    kept: list[str] = []
    if not live.is_dir():
        return kept
    for rel, path in tree.files(live):
        if tree.matches(rel, globs):
            _copy_one(live, stage, rel, path)
            kept.append(rel)
    for rel in empty_dirs(live):
        if tree.matches(rel, globs) and not (stage / rel).is_dir():
            _make_parents(live, stage, rel)
            tree.make_dir(stage / rel)
    return kept


def _copy_one(live: Path, stage: Path, rel: str, path: Path) -> None:
    st = path.lstat()
    dest = stage / rel
    if dest.is_dir() and not dest.is_symlink():
        raise RenderError(f"{live}/{rel}", "preserved file is a folder in the repo")
    _make_parents(live, stage, rel)
    dest.unlink(missing_ok=True)
    owner = (st.st_uid, st.st_gid) if os.geteuid() == 0 else None
    if stat.S_ISLNK(st.st_mode):
        dest.symlink_to(_link_inside(live, rel, path))
        if owner is not None:
            os.lchown(dest, *owner)
    elif stat.S_ISREG(st.st_mode):
        tree.write_file(dest, path.read_bytes(), stat.S_IMODE(st.st_mode), owner)
    else:
        raise RenderError(f"{live}/{rel}", "preserved entry is not a regular file or a link")


def _make_parents(live: Path, stage: Path, rel: str) -> None:
    dest = stage / rel
    for parent in reversed(dest.relative_to(stage).parents[:-1]):
        if (stage / parent).is_dir():
            continue
        if (stage / parent).exists():
            raise RenderError(f"{live}/{rel}", f"preserved, but the repo has a file {parent}")
        tree.make_dir(stage / parent)


def _link_inside(live: Path, rel: str, path: Path) -> str:
    """The link's text, if it resolves inside the target: validation reads the stage
    where only the target is bound, and a link out would show dhcpd other files."""
    text = str(path.readlink())
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), text))
    if text.startswith("/") or resolved == ".." or resolved.startswith("../"):
        raise RenderError(f"{live}/{rel}", f"preserved link points out of the target: {text}")
    return text


def empty_dirs(live: Path) -> Iterator[str]:
    """Folders below live with nothing in them, relative to it."""
    for dirpath, dirs, names in os.walk(live):
        if not dirs and not names and Path(dirpath) != live:
            yield Path(dirpath).relative_to(live).as_posix()
