"""Shared fixtures: real git repositories and agent nodes deploying into tmp folders."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from agent import config
from agent.engine.reconcile import Node
from agent.review.template import template_dir
from agent.servers.base import Server

# Fixture modules: the agent process, network namespaces, ssh and https remotes,
# the SMTP and HTTP receivers of notifications, and the failover pair's hosts.
pytest_plugins = [
    "tests.receivers", "tests.agentproc", "tests.netns", "tests.remotes", "tests.pairlab",
]  # fmt: skip

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.net",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.net",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
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


@pytest.fixture
def repo(tmp_path: Path) -> ConfigRepo:
    """The example pair from repo-template, committed and pushed."""
    r = ConfigRepo(tmp_path / "repo", template_dir())
    r.commit("Initial pair config")
    return r


def toml_text(tables: Mapping[str, Mapping[str, Any]]) -> str:
    """TOML for the agent config: tables of strings, numbers, booleans and lists."""
    lines: list[str] = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml_value(v)}" for key, v in table.items() if v is not None]
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


NodeFactory = Callable[..., Node]


@pytest.fixture
def make_node(tmp_path: Path, repo: ConfigRepo) -> NodeFactory:
    """Write an agent.toml for a node deploying into tmp_path/<name>/ and build its Node.

    Keyword arguments are sections whose keys override the defaults, for
    example make_node(role="secondary", dhcpd={"restart": "command", ...}).
    """

    def make(
        name: str = "dhcp1",
        role: str = "primary",
        server: Server | None = None,
        **sections: Mapping[str, Any],
    ) -> Node:
        home = tmp_path / name
        (home / "etc").mkdir(parents=True, exist_ok=True)
        tables: dict[str, dict[str, Any]] = {
            "node": {"name": name, "role": role},
            "source": {"url": repo.url, "branch": "main"},
            "deploy": {"target": str(home / "etc" / "dhcp"), "state_dir": str(home / "state")},
            "dhcpd": {
                "restart": "none",
                "lease_file": str(home / "dhcpd.leases"),
                "health_timeout": 0.2,
            },
        }
        for section, keys in sections.items():
            tables.setdefault(section, {}).update(keys)
        path = home / "agent.toml"
        path.write_text(toml_text(tables))
        return Node.from_config(config.load(path), server)

    return make


@pytest.fixture(scope="session")
def dhcpd_binary() -> str:
    """The real dhcpd from Debian's isc-dhcp-server: a test that needs it fails without it."""
    found = shutil.which("dhcpd") or shutil.which("dhcpd", path="/usr/sbin:/sbin")
    if not found:
        pytest.fail("dhcpd is missing: scripts/test.sh installs isc-dhcp-server")
    return found
