"""repo-template, the example config repo: found in the installation, copied by `init`."""

from __future__ import annotations

import shutil
from pathlib import Path

import git

import agent
from agent.errors import DhcpGitopsError, UsageError

AUTHOR = git.Actor("dhcp-gitops init", "dhcp-gitops@localhost")


def template_dir() -> Path:
    """repo-template: packaged inside the wheel, or beside the package in a checkout."""
    here = Path(agent.__file__).parent
    for candidate in (here / "repo_template", here.parent / "repo-template"):
        if (candidate / "pair.toml").is_file():
            return candidate
    raise DhcpGitopsError("repo-template is missing from this installation")


def init(folder: Path) -> str:
    """A new config repo in folder, from the template, with a first commit; its sha."""
    if folder.exists() and any(folder.iterdir()):
        raise UsageError(f"{folder} is not empty: init makes a new repository")
    shutil.copytree(template_dir(), folder, dirs_exist_ok=True)
    repo = git.Repo.init(folder, initial_branch="main")
    files = [p.relative_to(folder).as_posix() for p in sorted(folder.rglob("*")) if p.is_file()]
    repo.index.add([f for f in files if not f.startswith(".git/")])
    commit = repo.index.commit("Config repo from the dhcp-gitops template", author=AUTHOR,
                               committer=AUTHOR)  # fmt: skip
    return commit.hexsha
