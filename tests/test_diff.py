"""`dhcp-gitops diff`: what a sync would change, from real repos and a real target.

The command runs as a subprocess, as an operator would run it; its stdout is a
patch that `patch -p1` applies to a copy of the live tree to give exactly what
a sync deploys.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from agent import tree
from agent.engine.reconcile import Node, reconcile
from lab.agent import EXE
from lab.repo import ConfigRepo
from tests.conftest import NodeFactory

NEW_HOST = (
    "\nhost laptop-9 {\n  hardware ethernet 02:00:00:00:00:09;\n  fixed-address 192.0.2.19;\n}\n"
)


@pytest.fixture(autouse=True)
def _needs_dhcpd(dhcpd_binary: str) -> None:
    """Every deploy validates with the real dhcpd: fail, never skip, without it."""


def run_diff(node: Node) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, "diff", "--config", str(node.config.file)], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


def snapshot(root: Path) -> dict[str, bytes]:
    return {rel: path.read_bytes() for rel, path in tree.files(root)}


def test_no_change_exits_0(make_node: NodeFactory) -> None:
    node = make_node()
    assert reconcile(node).result == "deployed"
    done = run_diff(node)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "no change:" in done.stderr


def test_a_new_commit_is_a_patch_that_gives_what_a_sync_deploys(
    make_node: NodeFactory, repo: ConfigRepo, tmp_path: Path
) -> None:
    node = make_node()
    assert reconcile(node).result == "deployed"
    target = node.config.deploy.target
    before, state = snapshot(target), node.store.state_file.read_bytes()
    repo.write("dhcp/hosts.conf", repo.read("dhcp/hosts.conf") + NEW_HOST)
    repo.write("dhcp/extra.conf", "# a new file\n")
    sha = repo.commit("Add laptop-9")

    done = run_diff(node)

    assert done.returncode == 1, done.stderr
    assert "--- a/hosts.conf\n+++ b/hosts.conf\n" in done.stdout
    assert "+host laptop-9 {" in done.stdout
    assert "--- /dev/null\n+++ b/extra.conf\n" in done.stdout
    assert f"against {sha[:12]} 'Add laptop-9' (branch main)" in done.stderr
    assert "2 file(s) would change" in done.stderr
    assert snapshot(target) == before and node.store.state_file.read_bytes() == state
    assert not node.workspace.stage.exists()  # nothing live was touched

    copy = tmp_path / "copy"
    shutil.copytree(target, copy)
    subprocess.run(["patch", "-s", "-p1", "-d", str(copy)], input=done.stdout, text=True,
                   check=True)  # fmt: skip
    assert reconcile(node).result == "deployed"
    assert snapshot(copy) == snapshot(target)


def test_preserved_files_are_named_kept_and_not_diffed(make_node: NodeFactory) -> None:
    node = make_node(deploy={"preserve": ["dhcpd.keys"]})
    target = node.config.deploy.target
    tree.write(target, {"dhcpd.keys": b"key omapi { secret Kept-5ecret; }\n"})
    done = run_diff(node)
    assert done.returncode == 1
    assert "kept: dhcpd.keys" in done.stderr
    assert "a/dhcpd.keys" not in done.stdout and "Kept-5ecret" not in done.stdout
    assert "+++ b/dhcpd.conf" in done.stdout  # the first deploy adds the repo's files


def test_host_files_a_sync_would_refuse_are_named(make_node: NodeFactory) -> None:
    node = make_node()
    target = node.config.deploy.target
    tree.write(target, {"dhcpd.conf": b"# Debian's sample\n", "dhclient.conf": b"# client\n",
                        "dhclient-exit-hooks.d/timesyncd": b"# ntp\n"})  # fmt: skip
    done = run_diff(node)
    assert done.returncode == 1
    assert (
        f"a sync would refuse it: {target} holds files the repo does not cover: "
        "dhclient-exit-hooks.d/timesyncd, dhclient.conf." in done.stderr
    )
    assert "-# Debian's sample" in done.stdout  # the repo's files are still diffed
    assert "dhclient" not in done.stdout


def test_a_mode_a_sync_resets_is_a_change(make_node: NodeFactory) -> None:
    node = make_node()
    assert reconcile(node).result == "deployed"
    (node.config.deploy.target / "hosts.conf").chmod(0o600)
    done = run_diff(node)
    assert done.returncode == 1 and done.stdout == ""
    assert "mode: hosts.conf: mode 600 -> 644" in done.stderr


def test_a_commit_a_sync_would_refuse_is_named(make_node: NodeFactory, repo: ConfigRepo) -> None:
    node = make_node()
    assert reconcile(node).result == "deployed"
    repo.write("dhcp/hosts.conf.j2", "{{ no_such_variable }}\n")
    repo.remove("dhcp/hosts.conf")
    repo.commit("A template that does not render")
    done = run_diff(node)
    assert done.returncode == 1
    assert "a sync would refuse it: dhcp/hosts.conf.j2" in done.stderr


def test_a_supervised_node_may_diff(make_node: NodeFactory) -> None:
    """Unlike sync, diff restarts nothing: restart = "supervise" does not stop it."""
    node = make_node(dhcpd={"restart": "supervise"})
    done = run_diff(node)
    assert done.returncode == 1, done.stderr
    assert "+++ b/dhcpd.conf" in done.stdout


def test_errors_exit_2(make_node: NodeFactory, tmp_path: Path) -> None:
    node = make_node(source={"url": f"file://{tmp_path}/no-such-repo.git"})
    done = run_diff(node)
    assert done.returncode == 2
    assert done.stderr.startswith("dhcp-gitops: diff: ")
    bad = tmp_path / "bad.toml"
    bad.write_text('[node]\nname = "a"\nrole = "primary"\n')
    assert subprocess.run([EXE, "diff", "--config", str(bad)], capture_output=True,
                          timeout=60, check=False).returncode == 2  # fmt: skip
