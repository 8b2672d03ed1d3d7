"""Files on the host that the repo does not cover are never deleted silently.

A first deploy onto Debian's /etc/dhcp, which also holds other packages' files,
is refused and names them; the operator keeps them (preserve) or lets the
repo's tree replace them (host_files = "replace", sync --replace-host-files).
Later deploys remove what the repo dropped, and refuse a file that appeared.
Real repos, the real dhcpd -t (agent/engine/hostfiles.py).
"""

from __future__ import annotations

import stat
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from agent import tree
from agent.engine.reconcile import Node, reconcile
from lab.agent import EXE
from lab.repo import ConfigRepo, git
from tests.conftest import NodeFactory, StartAgent

ROOT = Path(__file__).resolve().parent.parent

# /etc/dhcp on Debian 12 beside isc-dhcp-server's dhcpd.conf, as the issue lists it:
# isc-dhcp-client's dhclient.conf, hook folders and debug, systemd-timesyncd's hook,
# and isc-dhcp-server's dhcpd6.conf.
DEBIAN_FILES = {
    "dhcpd.conf": b"# isc-dhcp-server's sample dhcpd.conf\n",
    "dhcpd6.conf": b"# isc-dhcp-server's sample dhcpd6.conf\n",
    "dhclient.conf": b"request subnet-mask, broadcast-address, routers;\n",
    "debug": b'# dhclient-script\'s debug switch\nRUN="no"\n',
    "dhclient-exit-hooks.d/timesyncd": b"# systemd-timesyncd: NTP servers from DHCP\n",
}
DEBIAN_EMPTY_FOLDERS = ("dhclient-enter-hooks.d",)
HOST_FILES = [  # what the first deploy must name: all of it but dhcpd.conf, the repo's
    "debug",
    "dhclient-enter-hooks.d/",
    "dhclient-exit-hooks.d/timesyncd",
    "dhclient.conf",
    "dhcpd6.conf",
]
# What `dpkg -L isc-dhcp-client` adds on a real Debian 12 (measured): rfc3442's hook,
# and the debug hooks as links to ../debug.
DEBIAN_LINKS = {
    "dhclient-enter-hooks.d/debug": "../debug",
    "dhclient-exit-hooks.d/debug": "../debug",
}
DEBIAN_MORE = {"dhclient-exit-hooks.d/rfc3442-classless-routes": b"# RFC 3442 routes\n"}


@pytest.fixture(autouse=True)
def _needs_dhcpd(dhcpd_binary: str) -> None:
    """Every deploy validates with the real dhcpd: fail, never skip, without it."""


def debian_etc_dhcp(target: Path, real: bool = False) -> None:
    tree.write(target, {**DEBIAN_FILES, **(DEBIAN_MORE if real else {})})
    for folder in DEBIAN_EMPTY_FOLDERS:
        (target / folder).mkdir(exist_ok=True)
    (target / "dhclient.conf").chmod(0o600)  # a mode of its own, to see it kept
    if real:
        for link, text in DEBIAN_LINKS.items():
            (target / link).symlink_to(text)


def entries(root: Path) -> dict[str, tuple[int, bytes | str | None]]:
    """Every entry under root with its mode and content (a link's text, None: folder)."""
    found: dict[str, tuple[int, bytes | str | None]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            content: bytes | str | None = str(path.readlink())
        else:
            content = None if path.is_dir() else path.read_bytes()
        found[path.relative_to(root).as_posix()] = (st.st_mode, content)
    return found


def reconciled(doc: dict[str, Any]) -> bool:
    """This agent's start-up reconcile is over (state.json may hold an earlier agent's)."""
    return bool(doc["reconciles"] >= 1 and doc["state"] == "idle")


def shipped_preserve() -> list[str]:
    example = tomllib.loads((ROOT / "packaging" / "agent.toml.example").read_text())
    globs: list[str] = example["deploy"]["preserve"]
    return globs


def test_a_first_deploy_onto_debians_etc_dhcp_is_refused_and_names_the_hosts_files(
    make_node: NodeFactory,
) -> None:
    node = make_node()
    target = node.config.deploy.target
    debian_etc_dhcp(target)
    before = entries(target)

    attempt = reconcile(node)

    assert attempt.result == "refused" and attempt.step == "render"
    assert f"{target} holds files the repo does not cover: {', '.join(HOST_FILES)}." in (
        attempt.message
    )
    assert "nothing was changed" in attempt.message
    assert (
        "preserve = ['debug', 'dhclient-enter-hooks.d', 'dhclient-exit-hooks.d', "
        "'dhclient.conf', 'dhcpd6.conf']" in attempt.message
    )
    assert entries(target) == before  # nothing deleted, not even Debian's dhcpd.conf
    assert node.store.load().deployed is None
    assert not node.workspace.stage.exists()


def test_the_agent_stays_up_and_deploys_once_the_operator_keeps_them(
    start_agent: StartAgent, repo: ConfigRepo, tmp_path: Path
) -> None:
    target = tmp_path / "dhcp1" / "etc" / "dhcp"
    target.parent.mkdir(parents=True)
    debian_etc_dhcp(target)
    before = entries(target)
    agent = start_agent()
    doc = agent.wait_for(reconciled)
    assert doc["last_attempt"]["result"] == "refused"
    assert "dhclient-exit-hooks.d/timesyncd" in doc["last_attempt"]["message"]
    assert agent.client.get("/healthz").status_code == 200  # up, serving the old tree
    assert entries(target) == before
    assert agent.stop() == 0

    keep = [g for g in HOST_FILES if g != "dhcpd6.conf"]  # preserve globs, without the "/"
    agent = start_agent(deploy={"preserve": [g.rstrip("/") for g in keep]})
    doc = agent.wait_for(reconciled)
    assert doc["last_attempt"]["result"] == "refused"
    assert "does not cover: dhcpd6.conf." in doc["last_attempt"]["message"]
    assert agent.stop() == 0

    agent = start_agent(deploy={"preserve": [*(g.rstrip("/") for g in keep), "dhcpd6.conf"]})
    agent.wait_deployed(git(repo.work, "rev-parse", "HEAD"))
    after = entries(target)
    assert {rel: after[rel] for rel in before if rel != "dhcpd.conf"} == {
        rel: value for rel, value in before.items() if rel != "dhcpd.conf"
    }


def test_sync_replace_host_files_deploys_and_keeps_them_in_the_rollback_tree(
    make_node: NodeFactory,
) -> None:
    node = make_node()
    target = node.config.deploy.target
    debian_etc_dhcp(target)
    before = entries(target)
    config = str(node.config.file)

    refused = subprocess.run([EXE, "sync", "--config", config], capture_output=True,
                             text=True, timeout=60, check=False)  # fmt: skip
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "at step render:" in refused.stdout and "--replace-host-files" in refused.stdout
    assert f"live: {target} unchanged" in refused.stdout

    done = subprocess.run([EXE, "sync", "--config", config, "--replace-host-files"],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (target / "dhclient.conf").exists()
    assert entries(node.workspace.previous) == before  # the rollback tree holds them
    assert "replacing files the repo does not cover" in done.stderr


def test_host_files_replace_in_agent_toml_lets_the_repo_replace_them(
    make_node: NodeFactory,
) -> None:
    node = make_node(deploy={"host_files": "replace"})
    debian_etc_dhcp(node.config.deploy.target)
    assert reconcile(node).result == "deployed"
    assert not (node.config.deploy.target / "dhcpd6.conf").exists()


def test_the_shipped_preserve_list_keeps_debians_files_links_included(
    make_node: NodeFactory, repo: ConfigRepo
) -> None:
    """packaging/agent.toml.example on a real Debian 12 layout: deployed, every file of
    the other packages kept, mode, bytes and links (debug -> ../debug) as they were."""
    node = make_node(deploy={"preserve": shipped_preserve()})
    target = node.config.deploy.target
    debian_etc_dhcp(target, real=True)
    before = entries(target)

    attempt = reconcile(node)

    assert attempt.result == "deployed", attempt.message
    after = entries(target)
    assert {rel: after[rel] for rel in before if rel != "dhcpd.conf"} == {
        rel: value for rel, value in before.items() if rel != "dhcpd.conf"
    }
    assert after["dhcpd.conf"][1] != before["dhcpd.conf"][1]  # the repo's, not Debian's
    assert (target / "dhclient-exit-hooks.d" / "debug").resolve() == target / "debug"
    second = reconcile(node)
    assert second.result == "current", second.message  # kept files are not drift


def test_a_later_deploy_removes_what_the_repo_dropped_and_refuses_a_new_host_file(
    make_node: NodeFactory, repo: ConfigRepo
) -> None:
    node = make_node()
    target = node.config.deploy.target
    repo.write("dhcp/extra.conf", "# an include nobody uses any more\n")
    repo.commit("Add extra.conf")
    assert reconcile(node).result == "deployed"

    # The repo drops extra.conf while the tree has drifted (a hand edit): extra.conf
    # was rendered by the deployed commit, so it goes, as before.
    (target / "hosts.conf").write_text((target / "hosts.conf").read_text() + "# by hand\n")
    repo.remove("dhcp/extra.conf")
    dropped = repo.commit("Drop extra.conf")
    assert reconcile(node).result == "deployed"
    assert not (target / "extra.conf").exists()

    (target / "notes.txt").write_text("an admin's notes\n")  # not from us
    repo.write("dhcp/hosts.conf", repo.read("dhcp/hosts.conf") + "# change\n")
    repo.commit("Change hosts.conf")
    attempt = reconcile(node)
    assert attempt.result == "refused"
    assert f"{target} holds files the repo does not cover: notes.txt." in attempt.message
    assert (target / "notes.txt").read_text() == "an admin's notes\n"
    deployed = node.store.load().deployed
    assert deployed is not None and deployed.sha == dropped


def test_a_preserved_link_out_of_the_target_is_refused(make_node: NodeFactory) -> None:
    node: Node = make_node(deploy={"preserve": ["keys"]})
    target = node.config.deploy.target
    tree.write(target, {"dhcpd.conf": b"# by hand\n"})
    (target / "keys").mkdir()
    (target / "keys" / "omapi.key").symlink_to("/etc/shadow")
    attempt = reconcile(node)
    assert attempt.result == "refused"
    assert "preserved link points out of the target: /etc/shadow" in attempt.message
    assert str((target / "keys" / "omapi.key").readlink()) == "/etc/shadow"
