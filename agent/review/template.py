"""The example config repos, found in the installation and copied by `init`: repo-template
(a dhcpd failover pair) and repo-template-kea (a Kea HA pair)."""

from __future__ import annotations

import shutil
from pathlib import Path

import git

import agent
from agent.errors import DhcpGitopsError, UsageError

AUTHOR = git.Actor("dhcp-gitops init", "dhcp-gitops@localhost")


# [node] server -> the template's folder name in a checkout ("-" as "_" in the wheel).
TEMPLATES = {"dhcpd": "repo-template", "kea": "repo-template-kea"}


def template_dir(server: str = "dhcpd") -> Path:
    """The server's template: packaged inside the wheel, or beside the package in a checkout."""
    here = Path(agent.__file__).parent
    name = TEMPLATES.get(server)
    if name is None:
        raise UsageError(f"no template for server {server!r}: one of {', '.join(TEMPLATES)}")
    for candidate in (here / name.replace("-", "_"), here.parent / name):
        if (candidate / "pair.toml").is_file():
            return candidate
    raise DhcpGitopsError(f"{name} is missing from this installation")


def init(folder: Path, server: str = "dhcpd") -> str:
    """A new config repo in folder, from the template, with a first commit; its sha."""
    if folder.exists() and any(folder.iterdir()):
        raise UsageError(f"{folder} is not empty: init makes a new repository")
    shutil.copytree(template_dir(server), folder, dirs_exist_ok=True)
    repo = git.Repo.init(folder, initial_branch="main")
    files = [p.relative_to(folder).as_posix() for p in sorted(folder.rglob("*")) if p.is_file()]
    repo.index.add([f for f in files if not f.startswith(".git/")])
    commit = repo.index.commit("Config repo from the dhcp-gitops template", author=AUTHOR,
                               committer=AUTHOR)  # fmt: skip
    return commit.hexsha
