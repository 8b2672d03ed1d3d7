"""The git side: a bare mirror of the config repo, fetched and read by commit."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

import git
from git.objects import Blob, Tree

from agent.config import Source, remote_kind
from agent.errors import FetchError, RenderError

SYMLINK_MODE = 0o120000

# What git prints after any failed transport; the cause (ssh's or git's) is above it.
_GIT_ADVICE = frozenset(
    {
        "",
        "fatal: Could not read from remote repository.",
        "Please make sure you have the correct access rights",
        "and the repository exists.",
    }
)


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    author: str
    committed_at: str  # ISO 8601


@dataclass(frozen=True)
class RepoFile:
    path: str  # from the repository root, '/'-separated
    data: bytes


def redact(text: str) -> str:
    """Hide the password of URLs such as https://user:token@host/ in messages."""
    return re.sub(r"(\w+://[^/\s:@]+):[^@/\s]+@", r"\1:***@", text)


class Mirror:
    """A bare repository under the state dir holding one branch of the remote."""

    def __init__(self, source: Source, state_dir: Path) -> None:
        self.source = source
        self.path = state_dir / "mirror.git"
        self.ref = f"refs/heads/{source.branch}"
        self._repo: git.Repo | None = None

    @property
    def repo(self) -> git.Repo:
        if self._repo is None:
            self._repo = self._open()
        return self._repo

    def _open(self) -> git.Repo:
        if (self.path / "HEAD").is_file():
            return git.Repo(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        return git.Repo.init(self.path, bare=True)

    def fetch(self) -> str:
        """Fetch the branch into the mirror; return the commit it points to."""
        refspec = f"+{self.ref}:{self.ref}"
        try:
            self.repo.git.fetch(
                "--no-tags",
                self.source.url,
                refspec,
                env=self._env(),
                kill_after_timeout=self.source.timeout,
            )
        except git.GitCommandError as err:
            raise FetchError(self._explain(err)) from err
        return self.head()

    def remote_head(self) -> str:
        """The branch's commit on the remote, by ls-remote: no objects are fetched."""
        try:
            out = self.repo.git.ls_remote(
                self.source.url, self.ref, env=self._env(), kill_after_timeout=self.source.timeout
            )
        except git.GitCommandError as err:
            raise FetchError(self._explain(err)) from err
        for line in str(out).splitlines():
            sha, _, ref = line.partition("\t")
            if ref == self.ref:
                return sha
        raise FetchError(
            f"branch {self.source.branch!r} does not exist on {redact(self.source.url)}"
        )

    def head(self) -> str:
        """The commit the mirror's branch points to, from the last fetch."""
        try:
            return self.repo.rev_parse(self.ref).hexsha
        except (git.BadName, ValueError) as err:
            raise FetchError(f"branch {self.source.branch!r} was never fetched") from err

    def commit(self, rev: str) -> Commit:
        try:
            c = self.repo.commit(rev)
            # A full sha resolves without a lookup; reading the commit is what
            # finds out that it is missing, so it belongs inside the try.
            return Commit(
                sha=c.hexsha,
                subject=str(c.summary),
                author=f"{c.author.name} <{c.author.email}>",
                committed_at=datetime.fromtimestamp(c.committed_date).astimezone().isoformat(),
            )
        except (git.BadName, ValueError) as err:
            raise FetchError(f"commit {rev!r} is not in the mirror") from err

    def descends(self, sha: str, ancestor: str) -> bool:
        """Whether sha is `ancestor` or a descendant of it (git merge-base --is-ancestor).

        A fetch brings the branch's whole history, so an ancestor missing from the
        mirror (a mirror cloned again after a force-push) is not in it: False.
        """
        try:
            self.repo.git.merge_base("--is-ancestor", ancestor, sha)
        except git.GitCommandError as err:
            if err.status == 1 or not self._has_commit(ancestor):
                return False
            raise FetchError(f"cannot tell whether {sha[:12]} descends from {ancestor[:12]}: "
                             f"{str(err.stderr).strip()}") from err  # fmt: skip
        return True

    def _has_commit(self, sha: str) -> bool:
        try:
            self.repo.git.cat_file("-e", f"{sha}^{{commit}}")
        except git.GitCommandError:
            return False
        return True

    def snapshot(self, sha: str) -> CommitSnapshot:
        return CommitSnapshot(self.repo.commit(sha).tree)

    def _env(self) -> dict[str, str]:
        env = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false"}
        if remote_kind(self.source.url) == "ssh":
            env["GIT_SSH_COMMAND"] = ssh_command(self.source)
        return env

    def _explain(self, err: git.GitCommandError) -> str:
        # GitPython wraps git's stderr as "stderr: '...'"; unwrap that quote only.
        stderr = str(err.stderr or "").strip().removeprefix("stderr: ")
        stderr = stderr.removeprefix("'").removesuffix("'").strip()
        if f"couldn't find remote ref {self.ref}" in stderr:
            return f"branch {self.source.branch!r} does not exist on {redact(self.source.url)}"
        if err.status is not None and not stderr:
            stderr = f"no answer within {self.source.timeout:g} s (timeout)"
        lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() not in _GIT_ADVICE]
        detail = lines[-1] if lines else f"git exited with {err.status}"
        return f"fetch from {redact(self.source.url)} failed: {redact(detail)}"


def ssh_command(source: Source) -> str:
    """ssh for git: the configured key only, a strict known_hosts, never a prompt."""
    argv = [
        "ssh",
        "-F", "/dev/null",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={source.known_hosts or '/dev/null'}",  # none: trust none
        "-o", "GlobalKnownHostsFile=/dev/null",  # the configured file is the only trust
        "-o", f"ConnectTimeout={max(1, int(source.timeout))}",
    ]  # fmt: skip
    if source.ssh_key is not None:
        argv += ["-o", "IdentitiesOnly=yes", "-i", str(source.ssh_key)]
    return shlex.join(argv)


class Snapshot(Protocol):
    """The config repo's files at one revision: a commit, or a checkout on disk."""

    def read(self, path: str) -> list[RepoFile] | None:
        """The file, or every file below the folder, at `path` (from the repo root); None
        when there is nothing there. Links, submodules and special files are refused."""

    def exists(self, path: str) -> bool: ...


class CommitSnapshot:
    def __init__(self, tree: Tree) -> None:
        self.tree = tree

    def read(self, path: str) -> list[RepoFile] | None:
        try:
            item = self.tree / path if path else self.tree
        except KeyError:
            return None
        if isinstance(item, Tree):
            return list(_blobs(item))
        return [_repo_file(item, path)]

    def exists(self, path: str) -> bool:
        try:
            self.tree / path  # the lookup is the test
        except KeyError:
            return False
        return True


class WorkTree:
    """A checkout's files as they are on disk (uncommitted changes included), .git left out."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, path: str) -> list[RepoFile] | None:
        full = self.root / path
        if not (full.exists() or full.is_symlink()):
            return None
        if full.is_dir() and not full.is_symlink():
            return [self._file(p) for p in sorted(full.rglob("*")) if self._wanted(p)]
        return [self._file(full)]

    def exists(self, path: str) -> bool:
        return (self.root / path).exists()

    def _wanted(self, path: Path) -> bool:
        return ".git" not in path.relative_to(self.root).parts and (
            path.is_symlink() or not path.is_dir()
        )

    def _file(self, path: Path) -> RepoFile:
        rel = path.relative_to(self.root).as_posix()
        if path.is_symlink():
            raise RenderError(rel, f"symbolic link (to {str(path.readlink())!r}) refused: "
                              "commit the file")  # fmt: skip
        if not path.is_file():
            raise RenderError(rel, "not a regular file")
        return RepoFile(path=rel, data=path.read_bytes())


def _blobs(tree: Tree) -> Iterator[RepoFile]:
    """Every blob below the tree; links and submodules are refused, not followed."""
    for item in tree.list_traverse():
        if isinstance(item, Tree | tuple):  # tuples only in typing: we traverse one tree
            continue
        yield _repo_file(item, str(item.path))


def _repo_file(item: object, path: str) -> RepoFile:
    if not isinstance(item, Blob):
        raise RenderError(path, "submodules are not supported in the config tree")
    if item.mode == SYMLINK_MODE:
        target = item.data_stream.read().decode("utf-8", "replace")
        raise RenderError(path, f"symbolic link (to {target!r}) refused: commit the file")
    return RepoFile(path=path, data=item.data_stream.read())
