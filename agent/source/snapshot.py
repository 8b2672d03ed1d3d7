"""The config repo's files at one revision: a commit in the mirror, or a checkout on disk."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import git
from git.objects import Blob, Tree

from agent.config import Limits
from agent.errors import FetchError, RenderError

if TYPE_CHECKING:  # the mirror hands itself over; it imports this module
    from agent.source.mirror import Mirror

SYMLINK_MODE = 0o120000


# What reading a damaged object store raises (GitPython's cat-file pipe, gitdb, zlib).
_DAMAGE = (ValueError, OSError, git.GitCommandError, git.BadObject)


@dataclass(frozen=True)
class RepoFile:
    path: str  # from the repository root, '/'-separated
    data: bytes


class Snapshot(Protocol):
    """The config repo's files at one revision: a commit, or a checkout on disk."""

    def read(self, path: str) -> list[RepoFile] | None:
        """The file, or every file below the folder, at `path` (from the repo root); None
        when there is nothing there. Links, submodules and special files are refused."""

    def exists(self, path: str) -> bool: ...


class CommitSnapshot:
    def __init__(
        self, tree: Tree, limits: Limits | None = None, mirror: Mirror | None = None
    ) -> None:
        self.tree = tree
        self.limits = limits or Limits()
        self.mirror = mirror  # dropped when its objects turn out unreadable

    def read(self, path: str) -> list[RepoFile] | None:
        try:
            return self._read(path)
        except _DAMAGE as err:
            raise self._damaged(err) from err

    def _read(self, path: str) -> list[RepoFile] | None:
        try:
            item = self.tree / path if path else self.tree
        except KeyError:
            return None
        budget = Budget(self.limits, path)
        if isinstance(item, Tree):
            return list(_blobs(item, budget))
        return [_repo_file(item, path, budget)]

    def exists(self, path: str) -> bool:
        try:
            self.tree / path  # the lookup is the test
        except KeyError:
            return False
        return True

    def _damaged(self, err: Exception) -> FetchError:
        """A fetch can succeed over a mirror with a lost or truncated object; reading
        finds out. The mirror goes, so the next fetch clones it whole again."""
        if self.mirror is not None:
            self.mirror.discard()
        return FetchError(
            f"the mirror's copy of commit {self.tree.hexsha[:12]}'s tree is damaged "
            f"({type(err).__name__}: {err}); it was dropped and the next fetch clones it again"
        )


class Budget:
    """One read counted against the limits, each file before its data is loaded."""

    def __init__(self, limits: Limits, folder: str) -> None:
        self.limits = limits
        self.folder = folder or "the repository root"
        self.files = 0
        self.bytes = 0

    def check_depth(self, path: str) -> None:
        """A file at path, or a folder to walk into, is not too deep."""
        if path.count("/") >= self.limits.depth:
            raise RenderError(
                path, f"more than {self.limits.depth} folder levels deep (limits.depth)"
            )

    def admit(self, path: str, size: int) -> None:
        limits = self.limits
        self.check_depth(path)
        if size > limits.file_size:
            raise RenderError(path, f"{size} bytes: over limits.file_size ({limits.file_size})")
        self.files += 1
        self.bytes += size
        if self.files > limits.files:
            raise RenderError(self.folder, f"more than {limits.files} files (limits.files)")
        if self.bytes > limits.tree_size:
            raise RenderError(
                self.folder, f"more than {limits.tree_size} bytes of files (limits.tree_size)"
            )


class WorkTree:
    """A checkout's files as they are on disk (uncommitted changes included), .git left out."""

    def __init__(self, root: Path, limits: Limits | None = None) -> None:
        self.root = root
        self.limits = limits or Limits()

    def read(self, path: str) -> list[RepoFile] | None:
        full = self.root / path
        if not (full.exists() or full.is_symlink()):
            return None
        budget = Budget(self.limits, path)
        if full.is_dir() and not full.is_symlink():
            return [self._file(p, budget) for p in self._walk(full, budget)]
        return [self._file(full, budget)]

    def exists(self, path: str) -> bool:
        return (self.root / path).exists()

    def _walk(self, top: Path, budget: Budget) -> list[Path]:
        """Every non-folder below top, sorted; iterative, so depth is the limit's to
        refuse, not Python's recursion limit. Links are listed (and then refused)."""
        found: list[Path] = []
        folders = [top]
        while folders:
            folder = folders.pop()
            with os.scandir(folder) as entries:
                for entry in entries:
                    path = Path(entry.path)
                    if entry.name == ".git":
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        budget.check_depth(path.relative_to(self.root).as_posix())
                        folders.append(path)
                    else:
                        found.append(path)
        return sorted(found)

    def _file(self, path: Path, budget: Budget) -> RepoFile:
        rel = path.relative_to(self.root).as_posix()
        if path.is_symlink():
            raise RenderError(rel, f"symbolic link (to {str(path.readlink())!r}) refused: "
                              "commit the file")  # fmt: skip
        if not path.is_file():
            raise RenderError(rel, "not a regular file")
        budget.admit(rel, path.stat().st_size)
        return RepoFile(path=rel, data=path.read_bytes())


def _blobs(tree: Tree, budget: Budget) -> Iterator[RepoFile]:
    """Every blob below the tree; links and submodules are refused, not followed."""
    for item in tree.list_traverse():
        if isinstance(item, Tree | tuple):  # tuples only in typing: we traverse one tree
            continue
        yield _repo_file(item, str(item.path), budget)


def _repo_file(item: object, path: str, budget: Budget) -> RepoFile:
    if not isinstance(item, Blob):
        raise RenderError(path, "submodules are not supported in the config tree")
    if item.mode == SYMLINK_MODE:
        target = item.data_stream.read(4096).decode("utf-8", "replace")
        raise RenderError(path, f"symbolic link (to {target!r}) refused: commit the file")
    budget.admit(path, item.size)  # the object header's size: nothing loaded yet
    return RepoFile(path=path, data=item.data_stream.read())
