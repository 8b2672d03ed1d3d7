"""agent.engine.reconcile end to end with real bare repos and the real dhcpd -t.

dhcpd is never started here (restart "none", or a stub restart command that
injects faults); tests/test_supervise.py runs the real one in a namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from agent import tree
from agent.engine import lock, status
from agent.engine.reconcile import Node, reconcile
from agent.errors import LockBusy
from lab.repo import ConfigRepo
from tests.conftest import NodeFactory


@pytest.fixture(autouse=True)
def _needs_dhcpd(dhcpd_binary: str) -> None:
    """Every test here validates with the real dhcpd: fail, never skip, without it."""


def snapshot(root: Path) -> dict[str, bytes]:
    return {rel: path.read_bytes() for rel, path in tree.files(root)}


def counting_restart(tmp_path: Path, fail_when: str = "") -> list[str]:
    """A restart command that counts its runs and fails while the live tree of node
    dhcp1 contains `fail_when`: the stand-in for a dhcpd that will not start (see
    test_supervise for the real one)."""
    script = tmp_path / "restart.sh"
    live = tmp_path / "dhcp1" / "etc" / "dhcp"
    script.write_text(
        "#!/bin/sh\n"
        f'echo run >> "{tmp_path}/restarts"\n'
        f'if [ -n "{fail_when}" ] && grep -rqF "{fail_when}" "{live}"; then\n'
        '  echo "dhcpd: Not configured to listen on any interfaces!" >&2; exit 1\n'
        "fi\n"
    )
    script.chmod(0o755)
    return [str(script)]


def restarts(tmp_path: Path) -> int:
    path = tmp_path / "restarts"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_good_commit_deploys_for_both_roles_each_with_its_own_failover(
    repo: ConfigRepo, make_node: NodeFactory
) -> None:
    primary, secondary = make_node("dhcp1", "primary"), make_node("dhcp2", "secondary")
    for node in (primary, secondary):
        attempt = reconcile(node)
        assert attempt.result == "deployed", attempt.message
        assert set(attempt.timings) >= {"fetch", "render", "validate", "publish", "record"}
    p_failover = (primary.config.deploy.target / "dhcpd.failover").read_text()
    s_failover = (secondary.config.deploy.target / "dhcpd.failover").read_text()
    assert "  primary;" in p_failover and "split 128;" in p_failover
    assert "  secondary;" in s_failover and "split" not in s_failover
    assert "peer address 192.0.2.2;" in p_failover and "peer address 192.0.2.1;" in s_failover
    conf = (primary.config.deploy.target / "dhcpd.conf").read_text()
    assert f'include "{primary.config.deploy.target}/hosts.conf";' in conf


def test_state_records_the_deploy_and_history_grows(
    repo: ConfigRepo, make_node: NodeFactory
) -> None:
    node = make_node()
    sha = repo.commit("Add nothing")
    reconcile(node)
    raw = json.loads((node.store.state_file).read_text())
    assert raw["schema_version"] == 1
    deployed = raw["deployed"]
    assert deployed["sha"] == sha and deployed["subject"] == "Add nothing"
    assert deployed["author"] == "Test Author <author@example.net>"
    assert deployed["digest"] == tree.digest(node.config.deploy.target)
    assert raw["last_attempt"]["result"] == "deployed"
    reconcile(node)
    assert [a.result for a in node.store.history()] == ["deployed", "current"]


def test_a_syntax_error_is_refused_with_file_and_line_and_nothing_changes(
    repo: ConfigRepo, make_node: NodeFactory
) -> None:
    node = make_node()
    good = reconcile(node).sha
    before = snapshot(node.config.deploy.target)
    repo.replace("dhcp/dhcpd.conf.j2", "authoritative;", "authoritative")
    repo.commit("Typo")
    attempt = reconcile(node)
    assert attempt.result == "refused" and attempt.step == "validate"
    first = attempt.problems[0]
    assert first.source == "dhcp/dhcpd.conf.j2" and first.line is not None
    assert snapshot(node.config.deploy.target) == before
    assert node.store.load().deployed.sha == good  # type: ignore[union-attr]
    assert not node.workspace.stage.exists()


def test_a_broken_included_file_is_refused_though_the_live_copy_is_fine(
    repo: ConfigRepo, make_node: NodeFactory
) -> None:
    node = make_node()
    reconcile(node)
    live_hosts = (node.config.deploy.target / "hosts.conf").read_bytes()
    repo.replace("dhcp/hosts.conf", "fixed-address 192.0.2.10;", "fixed-address 192.0.2.10")
    repo.commit("Break an include")
    attempt = reconcile(node)
    assert attempt.result == "refused"
    hosts = [p for p in attempt.problems if p.source == "dhcp/hosts.conf"]
    assert hosts and hosts[0].line == 6, attempt.problems
    assert (node.config.deploy.target / "hosts.conf").read_bytes() == live_hosts


def test_a_template_error_is_refused_at_render(repo: ConfigRepo, make_node: NodeFactory) -> None:
    node = make_node()
    repo.replace("dhcp/dhcpd.failover.j2", "{{ pair.failover.mclt }}", "{{ pair.failover.mcl }}")
    repo.commit("Misspelled key")
    attempt = reconcile(node)
    assert attempt.result == "refused" and attempt.step == "render"
    assert str(attempt.problems[0]).startswith("dhcp/dhcpd.failover.j2:5:")


def test_a_symlink_in_the_repo_is_refused(repo: ConfigRepo, make_node: NodeFactory) -> None:
    node = make_node()
    reconcile(node)
    before = snapshot(node.config.deploy.target)
    (repo.work / "dhcp" / "shadow.conf").symlink_to("/etc/shadow")
    repo.commit("Sneaky link")
    attempt = reconcile(node)
    assert attempt.result == "refused"
    assert "dhcp/shadow.conf" in attempt.message and "symbolic link" in attempt.message
    assert snapshot(node.config.deploy.target) == before


def test_an_include_outside_the_target_is_refused_without_echoing_it(
    repo: ConfigRepo, make_node: NodeFactory
) -> None:
    secret = Path(repo.work.parent / "secret.txt")
    secret.write_text("TOPSECRET-LINE\n")
    node = make_node()
    repo.write("dhcp/hosts.conf", f'include "{secret}";\n')
    repo.commit("Leak attempt")
    attempt = reconcile(node)
    assert attempt.result == "refused"
    assert "outside" in str(attempt.problems[0])
    assert "TOPSECRET" not in node.store.state_file.read_text()


def test_preserved_files_survive_a_deploy(repo: ConfigRepo, make_node: NodeFactory) -> None:
    node = make_node(deploy={"preserve": ["keys/*", "local.conf"]})
    target = node.config.deploy.target
    tree.write(target, {"keys/omapi.key": b"key secret\n", "local.conf": b"# mine\n"})
    assert reconcile(node).result == "deployed"
    assert (target / "keys" / "omapi.key").read_bytes() == b"key secret\n"
    assert (target / "local.conf").read_bytes() == b"# mine\n"
    assert status.live(node, node.store.load())["drift"] == "none"
    (target / "local.conf").write_text("# edited on the server\n")
    assert status.live(node, node.store.load())["drift"] == "none"  # its own file


def test_files_not_in_the_repo_or_preserve_are_removed(
    repo: ConfigRepo, make_node: NodeFactory
) -> None:
    """Once the operator lets the repo's tree replace them (tests/test_host_files.py)."""
    node = make_node(deploy={"host_files": "replace"})
    tree.write(node.config.deploy.target, {"stray.conf": b"old\n"})
    reconcile(node)
    assert not (node.config.deploy.target / "stray.conf").exists()


def test_first_deploy_creates_a_missing_target(repo: ConfigRepo, make_node: NodeFactory) -> None:
    node = make_node()
    assert not node.config.deploy.target.exists()
    assert reconcile(node).result == "deployed"
    assert (node.config.deploy.target / "dhcpd.conf").is_file()


def test_an_unchanged_branch_is_current_and_restarts_nothing(
    tmp_path: Path, repo: ConfigRepo, make_node: NodeFactory
) -> None:
    node = make_node(dhcpd={"restart": "command", "restart_command": counting_restart(tmp_path)})
    assert reconcile(node).result == "deployed"
    assert reconcile(node).result == "current"
    repo.write("README.md", "only the docs changed\n")
    sha = repo.commit("Docs")
    attempt = reconcile(node)
    assert attempt.result == "current"
    assert node.store.load().deployed.sha == sha  # type: ignore[union-attr]
    assert restarts(tmp_path) == 1


def test_a_dhcpd_that_will_not_start_is_rolled_back_byte_for_byte(
    tmp_path: Path, repo: ConfigRepo, make_node: NodeFactory
) -> None:
    restart = counting_restart(tmp_path, fail_when="198.51.100.77")
    node = make_node(dhcpd={"restart": "command", "restart_command": restart})
    good = reconcile(node).sha
    before = snapshot(node.config.deploy.target)
    repo.write("dhcp/extra.conf", "# host 198.51.100.77 kills the stub restart\n")
    repo.commit("Starts badly")
    attempt = reconcile(node)
    assert attempt.result == "rolled_back" and attempt.step == "restart"
    assert "previous tree is live again" in attempt.message
    assert "Not configured to listen" in attempt.message
    assert snapshot(node.config.deploy.target) == before
    assert restarts(tmp_path) == 3  # the good deploy, the bad one, the one after rollback
    state = node.store.load()
    assert state.deployed is not None and state.deployed.sha == good
    assert status.live(node, state)["drift"] == "none"


def test_the_lease_file_is_never_written(
    tmp_path: Path, repo: ConfigRepo, make_node: NodeFactory
) -> None:
    node = make_node(dhcpd={"restart": "command", "restart_command": counting_restart(tmp_path)})
    leases = node.config.dhcpd.lease_file
    leases.write_text("lease 192.0.2.150 {\n  starts 4 2026/11/19 10:00:00;\n}\n")
    before = leases.stat()
    content = leases.read_bytes()
    reconcile(node)
    repo.replace("dhcp/hosts.conf", "192.0.2.10;", "192.0.2.12;")
    repo.commit("Move printer")
    reconcile(node)
    after = leases.stat()
    assert leases.read_bytes() == content
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_stage_leftovers_from_a_crash_are_removed(repo: ConfigRepo, make_node: NodeFactory) -> None:
    node = make_node()
    reconcile(node)
    tree.write(node.workspace.stage, {"half.conf": b"half a tree"})
    assert status.live(node, node.store.load())["stage_leftover"] is True
    assert reconcile(node).result == "current"
    assert not node.workspace.stage.exists()


def test_two_syncs_at_once(repo: ConfigRepo, make_node: NodeFactory) -> None:
    node = make_node()
    other = make_node()  # the same state dir, as a second process would use
    assert lock.busy(node.store.dir) is False
    with lock.hold(node.store.dir, "a test holding the lock"):
        assert lock.busy(node.store.dir) is True
        with pytest.raises(LockBusy, match=f"pid {os.getpid()}, a test holding the lock"):
            reconcile(other, wait=False)
        told: list[str] = []
        waiting = threading.Thread(target=lambda: reconcile(other, on_wait=told.append))
        waiting.start()
        waiting.join(timeout=0.5)
        assert waiting.is_alive(), "the second sync must wait for the lock"
        assert told and "a test holding the lock" in told[0]
    waiting.join(timeout=60)
    assert not waiting.is_alive()
    assert node.store.load().last_attempt.result == "deployed"  # type: ignore[union-attr]


def test_drift_is_reported_and_the_next_sync_repairs_it(
    repo: ConfigRepo, make_node: NodeFactory
) -> None:
    node = make_node()
    reconcile(node)
    hosts = node.config.deploy.target / "hosts.conf"
    original = hosts.read_bytes()
    hosts.write_text("# edited by hand on the server\n")
    live = status.live(node, node.store.load())
    assert live["drift"] == "drifted" and live["changed_files"] == ["hosts.conf"]
    assert reconcile(node).result == "deployed"
    assert hosts.read_bytes() == original


def test_rollback_pins_until_the_branch_moves(repo: ConfigRepo, make_node: NodeFactory) -> None:
    node = make_node()
    first = reconcile(node).sha
    repo.replace("dhcp/hosts.conf", "192.0.2.10;", "192.0.2.12;")
    second = repo.commit("Move printer")
    assert reconcile(node).sha == second
    assert first is not None
    back = reconcile(node, rollback_to=first[:8])
    assert back.result == "deployed" and back.sha == first
    assert "192.0.2.10;" in (node.config.deploy.target / "hosts.conf").read_text()
    assert reconcile(node).sha == first  # the head did not move: the rollback holds
    third = repo.commit("Something new")
    assert reconcile(node).sha == third
    assert node.store.load().pin is None


def test_a_missing_pair_folder_is_refused(repo: ConfigRepo, make_node: NodeFactory) -> None:
    node = make_node(source={"path": "sites/nowhere"})
    attempt = reconcile(node)
    assert attempt.result == "refused"
    assert "sites/nowhere" in attempt.message and "not found" in attempt.message


def test_pair_folders_select_one_site(repo: ConfigRepo, make_node: NodeFactory) -> None:
    for rel in ("pair.toml", "dhcp", "roles"):
        os.renames(repo.work / rel, repo.work / "sites" / "north" / rel)
    repo.commit("Move the pair into sites/north")
    node = make_node(source={"path": "sites/north"})
    assert reconcile(node).result == "deployed"
    assert (node.config.deploy.target / "dhcpd.failover").is_file()


def test_an_unreachable_remote_fails_and_keeps_the_live_tree(
    repo: ConfigRepo, make_node: NodeFactory
) -> None:
    node = make_node()
    reconcile(node)
    before = snapshot(node.config.deploy.target)
    repo.bare.rename(repo.bare.with_name("moved.git"))
    attempt = reconcile(node)
    assert attempt.result == "failed" and attempt.step == "fetch"
    assert snapshot(node.config.deploy.target) == before


def test_releases_are_kept_and_pruned(repo: ConfigRepo, make_node: NodeFactory) -> None:
    node: Node = make_node(deploy={"keep_releases": 2})
    shas = [reconcile(node).sha]
    for i in range(3):
        repo.replace("dhcp/hosts.conf", f"192.0.2.{10 + i};", f"192.0.2.{11 + i};")
        repo.commit(f"Move printer {i}")
        shas.append(reconcile(node).sha)
    kept = {p.name for p in node.releases.dir.iterdir()}
    assert kept == set(shas[-2:])


def test_a_crash_between_exchange_and_restart_still_gets_its_restart(
    tmp_path: Path, repo: ConfigRepo, make_node: NodeFactory
) -> None:
    """The new tree is live but was never restarted onto: the next sync must restart."""
    node = make_node(dhcpd={"restart": "command", "restart_command": counting_restart(tmp_path)})
    reconcile(node)
    repo.replace("dhcp/hosts.conf", "192.0.2.10;", "192.0.2.12;")
    repo.commit("Move printer")
    recorded = node.store.load()
    reconcile(node)
    node.store.save(recorded)  # as if the agent died before recording the deploy
    assert restarts(tmp_path) == 2
    assert reconcile(node).result == "deployed"
    assert restarts(tmp_path) == 3


def test_common_files_are_laid_under_every_pair(repo: ConfigRepo, make_node: NodeFactory) -> None:
    for rel in ("pair.toml", "dhcp", "roles"):
        os.renames(repo.work / rel, repo.work / "sites" / "north" / rel)
    shutil.copytree(repo.work / "sites" / "north", repo.work / "sites" / "south")
    repo.write("common/options.conf", 'option domain-search "example.net";\n')
    repo.write("sites/south/dhcp/options.conf", "# south's own options replace common's\n")
    repo.commit("Two sites sharing common/")
    north = make_node("n1", source={"path": "sites/north"})
    south = make_node("s1", source={"path": "sites/south"})
    for node in (north, south):
        assert reconcile(node).result == "deployed"
    assert "domain-search" in (north.config.deploy.target / "options.conf").read_text()
    assert "south's own" in (south.config.deploy.target / "options.conf").read_text()


def test_a_commit_the_two_servers_would_disagree_on_is_refused_by_both(
    repo: ConfigRepo, make_node: NodeFactory
) -> None:
    """Invariant 10: with CI skipped, each agent renders its partner's side of the commit
    and refuses a pair-inconsistent one before anything restarts, naming file and line."""
    primary, secondary = make_node("dhcp1", "primary"), make_node("dhcp2", "secondary")
    for node in (primary, secondary):
        assert reconcile(node).result == "deployed"
    live = {n.config.node.name: snapshot(n.config.deploy.target) for n in (primary, secondary)}
    text = repo.read("dhcp/subnets.conf.j2")
    repo.write("roles/secondary/subnets.conf.j2",
               text.replace("192.0.2.100 192.0.2.199", "192.0.2.100 192.0.2.198", 1))  # fmt: skip
    repo.commit("The secondary's pool alone shrinks (dhcpd -t accepts each side)")
    for node in (primary, secondary):
        attempt = reconcile(node)
        assert attempt.result == "refused", attempt.message
        assert attempt.step == "validate"
        where = {(p.source, p.line) for p in attempt.problems}
        assert any(s and s.endswith("subnets.conf.j2") and line for s, line in where), where
        assert "make the pools identical" in attempt.message + str(attempt.problems)
        assert snapshot(node.config.deploy.target) == live[node.config.node.name]
