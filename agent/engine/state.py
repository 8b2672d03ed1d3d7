"""What the agent recorded: state.json (rewritten atomically) and history.jsonl (appended)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from agent import tree
from agent.config import Result
from agent.errors import DhcpGitopsError, Problem

SCHEMA_VERSION = 1


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Deployed(_Record):
    sha: str
    subject: str
    author: str
    committed_at: str
    deployed_at: str
    digest: str  # tree.digest() of the live tree, preserve globs left out


class Attempt(_Record):
    sha: str | None = None
    subject: str | None = None  # of the commit tried
    author: str | None = None
    started_at: str
    finished_at: str | None = None
    result: Result | None = None
    step: str | None = None  # the step that refused or failed
    signer: str | None = None  # who signed the commit, when [source] verify checked it
    message: str = ""
    problems: list[Problem] = []
    timings: dict[str, float] = {}  # seconds per step


class Pin(_Record):
    """A rollback holds `sha` live until the branch moves past `while_head`."""

    sha: str
    while_head: str


class State(_Record):
    schema_version: int = SCHEMA_VERSION
    deployed: Deployed | None = None
    previous: Deployed | None = None  # what the rollback tree holds
    last_attempt: Attempt | None = None
    pin: Pin | None = None


class Store:
    """The state dir's records."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.state_file = state_dir / "state.json"
        self.history_file = state_dir / "history.jsonl"

    def load(self) -> State:
        try:
            raw = json.loads(self.state_file.read_bytes())
        except FileNotFoundError:
            return State()
        except (OSError, ValueError) as err:
            raise DhcpGitopsError(f"{self.state_file}: unreadable: {err}") from err
        version = raw.get("schema_version") if isinstance(raw, dict) else None
        if version != SCHEMA_VERSION:
            raise DhcpGitopsError(f"{self.state_file}: schema_version {version!r} is not ours")
        try:
            return State.model_validate(raw)
        except ValidationError as err:
            raise DhcpGitopsError(f"{self.state_file}: not a state file: {err}") from err

    def save(self, state: State) -> None:
        """Write a temp file, fsync it, rename it over state.json, fsync the folder.

        Power-loss view: the bytes are on disk before the rename, and the rename
        is on disk before this returns, so a crash leaves either the old or the
        new state.json, never a torn one; and the caller acts on the new record
        (drops the exchange journal) only once it is durable. One writer at a
        time (the caller holds the lock): a temp file a killed writer left is
        simply replaced. A full or failing disk raises OSError with state.json
        as it was and no temp file left.
        """
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.state_file.with_name(".state.json.tmp")
        tmp.unlink(missing_ok=True)
        try:
            tree.write_file(tmp, state.model_dump_json(indent=2).encode() + b"\n", 0o600)
        except OSError:
            tmp.unlink(missing_ok=True)  # its blocks are what a full disk lacks
            raise
        tmp.replace(self.state_file)
        tree.fsync_dir(self.dir)

    def append_history(self, attempt: Attempt, node: str) -> None:
        """One line, fsync'd: after state.json, which is the truth; a crash between the
        two loses this line, a power cut during it may tear it (read skips it).

        A line the disk cannot take whole (ENOSPC, EIO) is cut off again, and a line a
        power cut tore is ended first: a new record never shares a line with a torn one.
        """
        line = (json.dumps({"node": node, **attempt.model_dump(mode="json")}) + "\n").encode()
        fd = os.open(self.history_file, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            end = os.fstat(fd).st_size
            if end and os.pread(fd, 1, end - 1) != b"\n":
                line = b"\n" + line
            _append(fd, line, end, self.history_file)
        finally:
            os.close(fd)

    def history(self, limit: int = 20) -> list[Attempt]:
        try:
            lines = self.history_file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        records = []
        for line in lines[-limit:]:
            try:
                raw = json.loads(line)
                raw.pop("node", None)
                records.append(Attempt.model_validate(raw))
            except (ValueError, AttributeError):  # a line torn by a power cut
                continue
        return records


def _append(fd: int, data: bytes, end: int, path: Path) -> None:
    """All of data after `end`, on disk; on failure the file is cut back to `end`."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError as err:
        os.ftruncate(fd, end)
        raise OSError(err.errno, err.strerror, str(path)) from err
