"""The git side: a bare mirror of the config repo, fetched and read by commit."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import git

from agent.config import Limits, Source, remote_kind
from agent.errors import CredentialError, FetchError, RemoteFault
from agent.source import credentials
from agent.source.credentials import Credential, redact
from agent.source.snapshot import CommitSnapshot

log = logging.getLogger(__name__)


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
class Remote:
    """What one git call against the remote is given: a URL without credentials, and
    the environment that carries them (credentials.py says why)."""

    url: str
    env: dict[str, str]
    hidden: tuple[str, ...] = ()  # the secret's forms, should git's stderr quote one


class Mirror:
    """A bare repository under the state dir holding one branch of the remote."""

    def __init__(self, source: Source, state_dir: Path, limits: Limits | None = None) -> None:
        self.source = source
        self.limits = limits or Limits()
        self.path = state_dir / "mirror.git"
        self.ref = f"refs/heads/{source.branch}"
        self.url, self._url_credential = credentials.split(source.url)
        self.shown_url = redact(source.url)  # the remote as every message names it
        self._repo: git.Repo | None = None

    @property
    def repo(self) -> git.Repo:
        if self._repo is None:
            self._repo = self._open()
        return self._repo

    def _open(self) -> git.Repo:
        if (self.path / "HEAD").is_file():
            try:
                return git.Repo(self.path)
            except git.InvalidGitRepositoryError:
                log.warning("the mirror %s is not a git repository: cloning again", self.path)
                shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        return git.Repo.init(self.path, bare=True)

    def fetch(self) -> str:
        """Fetch the branch into the mirror; return the commit it points to.

        The mirror is only a cache of the remote: when a fetch fails while the
        remote answers, the mirror is what is broken, so it is cloned again.
        """
        try:
            return self._fetch_head()
        except RemoteFault:
            raise  # a fresh clone would get the same answer
        except FetchError as err:
            if not self._remote_answers():
                raise
            log.warning("fetch failed though the remote answers (%s): cloning again", err.message)
            self.discard()
            return self._fetch_head()

    def _fetch_head(self) -> str:
        self._fetch()
        head = self.head()
        # git fetch trusts the objects it already has: a lost or damaged tree of
        # the head shows only when read. rev-list reads the commit and every tree.
        try:
            self.repo.git.rev_list("--objects", "--no-walk", "--quiet", head)
        except git.GitCommandError as err:
            raise FetchError(f"the mirror cannot read commit {head[:12]}: {_stderr(err)}") from err
        return head

    def discard(self) -> None:
        """Drop the mirror; the next fetch clones the branch again from the remote."""
        if self._repo is not None:
            self._repo.close()  # GitPython's cat-file processes hold the object files
            self._repo = None
        shutil.rmtree(self.path, ignore_errors=True)

    def _remote_answers(self) -> bool:
        try:
            self.remote_head()
        except FetchError:
            return False
        return True

    def _fetch(self) -> None:
        refspec = f"+{self.ref}:{self.ref}"
        remote = self._remote()
        try:
            self.repo.git.fetch(
                "--no-tags",
                remote.url,
                refspec,
                env=remote.env,
                kill_after_timeout=self.source.timeout,
            )
        except git.GitCommandError as err:
            raise self._error(err, remote) from err

    def remote_head(self) -> str:
        """The branch's commit on the remote, by ls-remote: no objects are fetched.

        Run outside the mirror, so that a damaged mirror cannot make the remote look down.
        """
        remote = self._remote()
        try:
            out = git.Git("/").ls_remote(
                remote.url, self.ref, env=remote.env, kill_after_timeout=self.source.timeout
            )
        except git.GitCommandError as err:
            raise self._error(err, remote) from err
        for line in str(out).splitlines():
            sha, _, ref = line.partition("\t")
            if ref == self.ref:
                return sha
        raise RemoteFault(self._no_branch())

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
                             f"{_stderr(err)}") from err  # fmt: skip
        return True

    def _has_commit(self, sha: str) -> bool:
        try:
            self.repo.git.cat_file("-e", f"{sha}^{{commit}}")
        except git.GitCommandError:
            return False
        return True

    def snapshot(self, sha: str) -> CommitSnapshot:
        return CommitSnapshot(self.repo.commit(sha).tree, self.limits, self)

    def _remote(self) -> Remote:
        """The URL and environment of one call; a token file is read again each time,
        so a rotated token is used from the next fetch on."""
        credential = self._credential()
        env = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false"}
        if remote_kind(self.url) == "ssh":
            env["GIT_SSH_COMMAND"] = ssh_command(self.source)
        env |= credentials.git_env(self.url, credential, os.environ)
        return Remote(self.url, env, credential.hidden() if credential else ())

    def _credential(self) -> Credential | None:
        source = self.source
        if source.token_file is None:
            return self._url_credential
        try:
            username = source.username or credentials.DEFAULT_USERNAME
            return credentials.from_file(source.token_file, username)
        except CredentialError as err:
            raise RemoteFault(f"fetch from {self.shown_url} failed: {err}") from err

    def _error(self, err: git.GitCommandError, remote: Remote) -> FetchError:
        """git's failure as one line: its own reason, without the advice it adds."""
        stderr = _stderr(err)
        if f"couldn't find remote ref {self.ref}" in stderr:
            return RemoteFault(self._no_branch())
        if err.status is not None and not stderr:  # killed at source.timeout
            timeout = f"no answer within {self.source.timeout:g} s (timeout)"
            return RemoteFault(f"fetch from {self.shown_url} failed: {timeout}")
        lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() not in _GIT_ADVICE]
        detail = lines[-1] if lines else f"git exited with {err.status}"
        return FetchError(f"fetch from {self.shown_url} failed: {redact(detail, remote.hidden)}")

    def _no_branch(self) -> str:
        return f"branch {self.source.branch!r} does not exist on {self.shown_url}"


def _stderr(err: git.GitCommandError) -> str:
    """git's stderr, redacted: every message built from it may be shown."""
    # GitPython wraps git's stderr as "stderr: '...'"; unwrap that quote only.
    stderr = str(err.stderr or "").strip().removeprefix("stderr: ")
    return redact(stderr.removeprefix("'").removesuffix("'").strip())


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
