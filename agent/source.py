"""The git side: a bare mirror of the config repo, fetched and read by commit."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

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
    path: str  # relative to the pair folder, '/'-separated
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

    def read(self, sha: str, rel: str) -> list[RepoFile] | None:
        """The file or the files below the folder `rel` of the pair folder; None if absent."""
        path = "/".join(p for p in (self.source.path, rel) if p)
        try:
            item = self.repo.commit(sha).tree / path if path else self.repo.commit(sha).tree
        except KeyError:
            return None
        if isinstance(item, Tree):
            return list(_files(item, prefix=self.source.path))
        if isinstance(item, Blob) and item.mode != SYMLINK_MODE:
            return [RepoFile(path=rel, data=item.data_stream.read())]
        raise RenderError(rel, "expected a file or a folder, found a link or a submodule")

    def has_pair_folder(self, sha: str) -> bool:
        if not self.source.path:
            return True
        try:
            self.repo.commit(sha).tree / self.source.path
        except KeyError:
            return False
        return True

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


def _files(tree: Tree, prefix: str) -> Iterator[RepoFile]:
    """Every blob below the tree; links and submodules are refused, not followed."""
    for item in tree.list_traverse():
        if isinstance(item, Tree | tuple):  # tuples only in typing: we traverse one tree
            continue
        path = str(item.path)
        shown = path.removeprefix(f"{prefix}/") if prefix else path
        if not isinstance(item, Blob):
            raise RenderError(shown, "submodules are not supported in the config tree")
        if item.mode == SYMLINK_MODE:
            target = item.data_stream.read().decode("utf-8", "replace")
            raise RenderError(shown, f"symbolic link (to {target!r}) refused: commit the file")
        yield RepoFile(path=shown, data=item.data_stream.read())
