"""Config repositories: a working clone and the bare repository it pushes to.

git runs with a fixed author and without the machine's git config, so every
commit the lab makes is the same wherever it runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.net",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.net",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
    """`git ARGS` in cwd with GIT_ENV; its output, stripped (CalledProcessError if it fails)."""
    done = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


class ConfigRepo:
    """A working clone and the bare repository it pushes to (the agent's remote)."""

    def __init__(self, root: Path, template: Path | None) -> None:
        self.bare = root / "remote.git"
        self.work = root / "work"
        root.mkdir(parents=True, exist_ok=True)
        git(root, "init", "-q", "--bare", "-b", "main", str(self.bare))
        if template is not None:
            shutil.copytree(template, self.work)
        else:
            self.work.mkdir()
        git(self.work, "init", "-q", "-b", "main")
        git(self.work, "remote", "add", "origin", str(self.bare))

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def write(self, rel: str, text: str | bytes) -> Path:
        path = self.work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    def read(self, rel: str) -> str:
        return (self.work / rel).read_text()

    def replace(self, rel: str, old: str, new: str) -> None:
        text = self.read(rel)
        assert old in text, f"{old!r} not in {rel}"
        self.write(rel, text.replace(old, new))

    def remove(self, rel: str) -> None:
        git(self.work, "rm", "-rq", rel)

    def commit(self, message: str = "change") -> str:
        """Commit everything and push it; return the new commit's sha."""
        git(self.work, "add", "-A")
        git(self.work, "commit", "-qm", message, "--allow-empty")
        git(self.work, "push", "-q", "origin", "HEAD:main")
        return git(self.work, "rev-parse", "HEAD")
