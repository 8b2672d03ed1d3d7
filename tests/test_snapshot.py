"""agent.source.mirror snapshots: a commit and a checkout give the same files, links refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import Source
from agent.engine.render import render_pair
from agent.errors import RenderError
from agent.source.mirror import Mirror
from agent.source.snapshot import CommitSnapshot, WorkTree
from lab.repo import ConfigRepo


def commit_snapshot(tmp_path: Path, repo: ConfigRepo) -> CommitSnapshot:
    mirror = Mirror(Source(url=repo.url), tmp_path / "state")
    return mirror.snapshot(mirror.fetch())


def test_a_checkout_renders_like_its_commit(tmp_path: Path, repo: ConfigRepo) -> None:
    for role in ("primary", "secondary"):
        from_git = render_pair(commit_snapshot(tmp_path, repo), "", role, "n", "/etc/dhcp")
        from_disk = render_pair(WorkTree(repo.work), "", role, "n", "/etc/dhcp")
        assert from_git == from_disk


def test_a_checkout_includes_uncommitted_changes_but_not_git(repo: ConfigRepo) -> None:
    repo.write("dhcp/new.conf", "# not committed yet\n")
    files = WorkTree(repo.work).read("")
    assert files is not None
    paths = {f.path for f in files}
    assert "dhcp/new.conf" in paths and not any(p.startswith(".git/") for p in paths)


def test_a_checkout_refuses_links(repo: ConfigRepo) -> None:
    (repo.work / "dhcp" / "link.conf").symlink_to("/etc/passwd")
    with pytest.raises(RenderError, match=r"dhcp/link\.conf.*symbolic link"):
        WorkTree(repo.work).read("dhcp")


def test_missing_pair_folder_and_missing_dhcp_folder(repo: ConfigRepo) -> None:
    tree = WorkTree(repo.work)
    with pytest.raises(RenderError, match="sites/x: pair folder not found"):
        render_pair(tree, "sites/x", "primary", "n", "/etc/dhcp")
    (repo.work / "sites" / "y").mkdir(parents=True)
    (repo.work / "sites" / "y" / "pair.toml").write_text("")
    with pytest.raises(RenderError, match="no dhcp/ folder"):
        render_pair(tree, "sites/y", "primary", "n", "/etc/dhcp")
