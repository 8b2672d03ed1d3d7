"""A real Kea HA pair in network namespaces: both agents reload a pushed change over the
control socket and the pair comes back to load-balancing.

The two kea-dhcp4 are run as the system would run them (the test starts them,
in the namespaces it made: they never see the host's interfaces); the agents
apply with restart = "reload".
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.engine.reconcile import Node, reconcile
from agent.review.template import template_dir
from agent.servers.kea import control
from lab.netns import Namespace, PeerLink, dhcpd_wrapper
from lab.repo import ConfigRepo
from tests.conftest import NodeFactory

KEA = "/usr/sbin/kea-dhcp4"
NORMAL_WITHIN = 60.0  # seconds: waiting, syncing, ready, load-balancing (heartbeats of 1 s)
NAMES = (("dhcp1", "primary"), ("dhcp2", "secondary"))


@pytest.fixture
def repo(tmp_path: Path) -> ConfigRepo:
    return kea_pair_repo(tmp_path)


def kea_pair_repo(tmp_path: Path) -> ConfigRepo:
    """The example Kea pair, each server's socket and lease file in tmp_path."""
    r = ConfigRepo(tmp_path / "repo", template_dir("kea"))
    r.replace("pair.toml", "heartbeat_delay = 10000", "heartbeat_delay = 1000")
    text = r.read("pair.toml")
    for name, role in NAMES:
        home = tmp_path / name
        extra = f'control_socket = "{home}/kea.sock"\nlease_file = "{home}/leases4.csv"\n'
        text = text.replace(f'[{role}]\nname = "{name}"\n', f'[{role}]\nname = "{name}"\n{extra}')
    r.write("pair.toml", text)
    r.commit("The example Kea pair, in the test's folders")
    return r


def node_for(make_node: NodeFactory, tmp_path: Path, name: str, role: str, restart: str) -> Node:
    home = tmp_path / name
    return make_node(name, role, node={"server": "kea"},
                     deploy={"target": str(home / "etc" / "kea")},
                     kea={"restart": restart, "control_socket": str(home / "kea.sock"),
                          "health_timeout": 0.5})  # fmt: skip


def run_kea(ns: Namespace, home: Path) -> subprocess.Popen[bytes]:
    """kea-dhcp4 on the live tree, inside ns, as the system would run it."""
    env = {"KEA_PIDFILE_DIR": str(home), "KEA_LOCKFILE_DIR": str(home), "PATH": "/usr/bin:/bin"}
    log = (home / "kea.log").open("wb")
    argv = ns.argv(KEA, "-c", str(home / "etc" / "kea" / "kea-dhcp4.conf"))
    return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture
def running(
    peer_link: PeerLink, repo: ConfigRepo, make_node: NodeFactory, tmp_path: Path
) -> Iterator[list[Node]]:
    """Both servers deployed once (files only), then their kea-dhcp4 started; the
    agents' nodes then apply by reload. The kea-dhcp4 are stopped before netlab
    deletes the namespaces."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for (name, role), ns in zip(NAMES, (peer_link.primary, peer_link.secondary), strict=True):
            first = node_for(make_node, tmp_path, name, role, "none")
            assert reconcile(first).result == "deployed"
            procs.append(run_kea(ns, tmp_path / name))
        yield [node_for(make_node, tmp_path, name, role, "reload") for name, role in NAMES]
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_normal(nodes: list[Node]) -> float:
    start = time.monotonic()
    while time.monotonic() - start < NORMAL_WITHIN:
        if all(n.server.pair_normal() for n in nodes):
            return time.monotonic() - start
        time.sleep(0.2)
    states = [n.server.pair_states() for n in nodes]
    raise AssertionError(f"not load-balancing within {NORMAL_WITHIN:g} s: {states}")


def test_a_pushed_change_is_reloaded_on_both_and_the_pair_stays_load_balancing(
    running: list[Node], repo: ConfigRepo, tmp_path: Path
) -> None:
    took = wait_normal(running)
    print(f"load-balancing after {took:.1f} s")
    repo.replace("dhcp/kea-dhcp4.conf.j2", '"valid-lifetime": 3600', '"valid-lifetime": 4000')
    repo.commit("Longer leases")
    for node in running:
        attempt = reconcile(node)
        assert attempt.result == "deployed", (attempt.message, attempt.problems)
        sock = node.config.kea.control_socket
        got = control.command(sock, "config-get")
        assert got["Dhcp4"]["valid-lifetime"] == 4000
        # config-reload loads the HA hook afresh: the relationship starts over
        # (waiting, syncing, ready) and must come back to load-balancing.
        print(
            f"{node.config.node.name}: HA {node.server.pair_states()[0].mine} after the reload,"
            f" load-balancing again after {wait_normal(running):.1f} s"
        )
    (mine, *_), (theirs, *_) = (n.server.pair_states() for n in running)
    assert (mine.mine, theirs.mine) == ("load-balancing", "load-balancing")
    assert (mine.peer, theirs.peer) == ("dhcp2", "dhcp1")


def test_config_test_refusing_on_the_server_rolls_back_without_restarting_ha(
    running: list[Node], repo: ConfigRepo
) -> None:
    """eth7 is made in the sandbox, so kea-dhcp4 -t takes it; the running Kea, whose
    namespace lacks it, refuses it in config-test. The old tree goes back, and Kea,
    which never left its config, is not reloaded: HA stays load-balancing."""
    wait_normal(running)
    primary = running[0]
    repo.write("roles/primary/interfaces.json", '"interfaces-config": { "interfaces": ["eth7"] },')
    repo.commit("An interface the primary lacks")
    before = (primary.config.deploy.target / "interfaces.json").read_text()
    attempt = reconcile(primary)
    assert attempt.result == "rolled_back" and attempt.step == "restart", attempt.message
    assert "eth7" in attempt.message and "config-test refused the new one" in attempt.message
    assert (primary.config.deploy.target / "interfaces.json").read_text() == before
    assert primary.server.pair_states()[0].mine == "load-balancing"


def test_a_supervised_kea_restarts_on_a_change_and_rolls_back_when_it_will_not_start(
    peer_link: PeerLink, repo: ConfigRepo, make_node: NodeFactory, tmp_path: Path
) -> None:
    """restart = "supervise": kea-dhcp4 is the agent's child (inside the primary's
    namespace, through the lab's wrapper). A lease file Kea cannot open passes
    kea-dhcp4 -t but stops Kea at start: the old tree goes back and Kea runs on it."""
    home = tmp_path / "dhcp1"
    wrapper = dhcpd_wrapper(tmp_path / "kea-in-netns", peer_link.primary, KEA)
    node = make_node("dhcp1", "primary", node={"server": "kea"},
                     deploy={"target": str(home / "etc" / "kea")},
                     kea={"restart": "supervise", "binary": str(wrapper), "validate_binary": KEA,
                          "health_timeout": 1.0,
                          "control_socket": str(home / "kea.sock")})  # fmt: skip
    try:
        assert reconcile(node).result == "deployed"
        first = node.server.health()
        assert first.running and first.pid
        repo.replace("dhcp/kea-dhcp4.conf.j2", '"valid-lifetime": 3600', '"valid-lifetime": 4000')
        repo.commit("Longer leases")
        assert reconcile(node).result == "deployed"
        assert node.server.health().pid != first.pid
        repo.replace("pair.toml", f'lease_file = "{home}/leases4.csv"',
                     'lease_file = "/nonexistent-dgt/leases4.csv"')  # fmt: skip
        repo.commit("A lease file Kea cannot open")
        attempt = reconcile(node)
        assert attempt.result == "rolled_back" and attempt.step == "verify", attempt.message
        assert "Unable to open database" in attempt.message
        assert node.server.health().running
        conf = (home / "etc" / "kea" / "kea-dhcp4.conf").read_text()
        assert f"{home}/leases4.csv" in conf and '"valid-lifetime": 4000' in conf
    finally:
        node.server.stop()
