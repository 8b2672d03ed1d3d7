"""The supervised dhcpd, for real: deploy, restart, roll back, and the lease file.

Every dhcpd here runs inside a network namespace of lab/netns.py (the node's
[dhcpd] binary is a wrapper that execs it there), on eth0 with 192.0.2.1/24:
the example pair's primary, whose failover peer 192.0.2.2 never answers.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.engine.reconcile import Node, reconcile
from agent.servers import dhcpd
from agent.servers.dhcpd.restart import Supervisor
from lab.netns import DHCPD, Lan, NetLab
from lab.proc import dhcpd_pids_using, wait_until
from lab.repo import ConfigRepo, git
from tests.conftest import NodeFactory, StartAgent, require_netns

HEALTH_TIMEOUT = 1.0  # long enough for dhcpd to reach its interfaces and die if it will

NEW_HOST = """
host laptop-2 {
  hardware ethernet 02:00:00:00:00:03;
  fixed-address 192.0.2.11;
}
"""

LEASE_IP = "192.0.2.150"  # inside the failover pool 192.0.2.100-199 of subnets.conf.j2
LEASE_MAC = "02:00:00:00:01:50"


@pytest.fixture
def node(make_node: NodeFactory, lan: Lan, tmp_path: Path) -> Iterator[Node]:
    """The primary, supervising dhcpd in lan's server namespace; stopped after the test."""
    n = make_node(
        dhcpd={
            "restart": "supervise",
            "binary": str(lan.dhcpd),
            "validate_binary": DHCPD,
            "args": [lan.interface],
            "health_timeout": HEALTH_TIMEOUT,
        }
    )
    try:
        yield n
    finally:
        n.server.stop()  # before lan's teardown, which would SIGKILL it
        assert not dhcpd_pids_using(str(tmp_path)), "a dhcpd of this test survived stop()"


def supervisor(node: Node) -> Supervisor:
    assert isinstance(node.server, dhcpd.Server)
    assert isinstance(node.server.restarter, Supervisor)
    return node.server.restarter


def dhcpd_pid(node: Node) -> int:
    proc = supervisor(node).proc
    assert proc is not None, "the Supervisor holds no dhcpd"
    return proc.pid


def assert_serving_in(node: Node, lan: Lan) -> int:
    """dhcpd runs, inside the test namespace, listening on the lan; return its pid."""
    sup = supervisor(node)
    assert sup.alive(), "\n".join(sup.output)
    pid = dhcpd_pid(node)
    assert Path(f"/proc/{pid}/exe").resolve().name == "dhcpd"  # ip netns exec exec'd it
    assert lan.server.holds(pid), "dhcpd is not in the test's network namespace"
    wait_for_line(sup, f"Listening on LPF/{lan.interface}/")
    return pid


def wait_for_line(sup: Supervisor, prefix: str) -> None:
    """dhcpd's output arrives through a reader thread: give it a moment."""
    seen = wait_until(lambda: any(line.startswith(prefix) for line in sup.output))
    assert seen, f"no {prefix!r} in dhcpd's output:\n" + "\n".join(sup.output)


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry under folder: files with their bytes, folders as None."""
    return {
        str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes()
        for p in sorted(folder.rglob("*"))
    }


def drop_subnet(repo: ConfigRepo, network: str) -> None:
    """Delete one subnet block from subnets.conf.j2: dhcpd -t still accepts the file."""
    rel = "dhcp/subnets.conf.j2"
    text = repo.read(rel)
    start = text.index(f"subnet {network} ")
    end = text.index("\n}\n", start) + len("\n}\n")
    repo.write(rel, text[:start] + text[end:])


def lease_record(ip: str, mac: str) -> str:
    """An active lease as dhcpd.leases(5) writes it: times in UTC, weekday first."""
    fmt = "%w %Y/%m/%d %H:%M:%S"
    start = time.gmtime(time.time() - 600)
    end = time.gmtime(time.time() + 30 * 86400)
    return (
        f"lease {ip} {{\n"
        f"  starts {time.strftime(fmt, start)};\n"
        f"  ends {time.strftime(fmt, end)};\n"
        f"  cltt {time.strftime(fmt, start)};\n"
        "  binding state active;\n"
        "  next binding state expired;\n"
        f"  hardware ethernet {mac};\n"
        '  client-hostname "laptop-150";\n'
        "}\n"
    )


def active_lease(leases: str, ip: str) -> str | None:
    """The body of the lease declaration for ip, if it is there and active."""
    found = re.search(rf"^lease {re.escape(ip)} \{{\n(.*?)^\}}", leases, re.M | re.S)
    if found is None or "  binding state active;" not in found[1]:
        return None
    return found[1]


def test_first_deploy_starts_dhcpd_in_the_namespace(node: Node, lan: Lan) -> None:
    attempt = reconcile(node)

    assert attempt.result == "deployed", attempt.message
    assert_serving_in(node, lan)
    assert not lan.server.holds(os.getpid())  # the namespace is not the one we run in


def test_a_new_commit_restarts_dhcpd_on_the_new_tree(
    node: Node, lan: Lan, repo: ConfigRepo
) -> None:
    assert reconcile(node).result == "deployed"
    first = assert_serving_in(node, lan)

    repo.write("dhcp/hosts.conf", repo.read("dhcp/hosts.conf") + NEW_HOST)
    sha = repo.commit("Add laptop-2")
    attempt = reconcile(node)

    assert attempt.result == "deployed", attempt.message
    assert assert_serving_in(node, lan) != first
    target = node.config.deploy.target
    assert (target / "hosts.conf").read_text() == repo.read("dhcp/hosts.conf")
    deployed = node.store.load().deployed
    assert deployed is not None and deployed.sha == sha


def test_a_commit_dhcpd_will_not_start_on_is_rolled_back(
    node: Node, lan: Lan, repo: ConfigRepo
) -> None:
    good = git(repo.work, "rev-parse", "HEAD")
    assert reconcile(node).result == "deployed"
    first = assert_serving_in(node, lan)
    target = node.config.deploy.target
    before = snapshot(target)

    # eth0 has 192.0.2.1: with no subnet around it dhcpd -t passes, dhcpd exits.
    drop_subnet(repo, "192.0.2.0")
    bad = repo.commit("Drop 192.0.2.0/24")
    attempt = reconcile(node)

    assert attempt.result == "rolled_back", attempt.message
    assert attempt.step == "verify" and attempt.sha == bad
    assert "No subnet declaration for eth0 (192.0.2.1)" in attempt.message
    assert "Not configured to listen on any interfaces!" in attempt.message
    assert snapshot(target) == before
    assert not node.workspace.stage.exists()  # the refused tree is gone
    assert assert_serving_in(node, lan) != first  # restarted, on the old tree
    deployed = node.store.load().deployed
    assert deployed is not None and deployed.sha == good


def test_the_lease_file_keeps_its_leases_across_deploys(
    node: Node, lan: Lan, repo: ConfigRepo
) -> None:
    leases = node.config.dhcpd.lease_file
    leases.write_text(lease_record(LEASE_IP, LEASE_MAC))

    assert reconcile(node).result == "deployed"
    assert_serving_in(node, lan)
    repo.write("dhcp/hosts.conf", repo.read("dhcp/hosts.conf") + NEW_HOST)
    repo.commit("Add laptop-2")
    assert reconcile(node).result == "deployed"
    assert_serving_in(node, lan)

    text = leases.read_text()
    assert "written by isc-dhcp" in text  # dhcpd read and rewrote it: a real round trip
    body = active_lease(text, LEASE_IP)
    assert body is not None, text
    assert f"hardware ethernet {LEASE_MAC};" in body


def test_a_rolled_back_commit_keeps_the_leases(node: Node, lan: Lan, repo: ConfigRepo) -> None:
    """dhcpd drops the leases of a removed subnet before it fails on its interfaces;
    the rollback puts dhcpd's own earlier lease file back (agent/servers/dhcpd/leases.py)."""
    leases = node.config.dhcpd.lease_file
    leases.write_text(lease_record(LEASE_IP, LEASE_MAC))
    assert reconcile(node).result == "deployed"

    drop_subnet(repo, "192.0.2.0")
    repo.commit("Drop 192.0.2.0/24")
    attempt = reconcile(node)
    assert attempt.result == "rolled_back"
    assert "lease file dhcpd rewrote on the new config was put back" in attempt.message

    assert active_lease(leases.read_text(), LEASE_IP) is not None
    assert_serving_in(node, lan)


def test_a_restart_that_cannot_spawn_dhcpd_is_rolled_back(
    node: Node, lan: Lan, repo: ConfigRepo, tmp_path: Path
) -> None:
    good = git(repo.work, "rev-parse", "HEAD")
    assert reconcile(node).result == "deployed"
    target = node.config.deploy.target
    before = snapshot(target)

    # The lease file becomes a link to storage that is gone: the next dhcpd
    # cannot even be spawned, on the new tree or on the old one.
    leases = node.config.dhcpd.lease_file
    leases.unlink()
    leases.symlink_to(tmp_path / "gone" / "dhcpd.leases")
    repo.write("dhcp/hosts.conf", repo.read("dhcp/hosts.conf") + NEW_HOST)
    repo.commit("Add laptop-2")
    attempt = reconcile(node)

    assert attempt.result == "rolled_back", attempt.message
    assert "did not come back on it either: cannot start dhcpd: File exists" in attempt.message
    assert snapshot(target) == before  # the old tree is live, not the unrecorded new one
    assert not supervisor(node).alive()
    deployed = node.store.load().deployed
    assert deployed is not None and deployed.sha == good


def test_netlab_teardown_kills_what_runs_in_its_namespaces() -> None:
    """The harness's own safety net: nothing a test leaves running outlives the test."""
    require_netns()
    lab = NetLab()
    try:
        ns = lab.namespace("leftover")
        sleeper = subprocess.Popen(ns.argv("sleep", "60"))
        assert wait_until(lambda: ns.holds(sleeper.pid))  # ip netns exec takes a moment

        left = lab.teardown()

        assert sleeper.wait(timeout=5) == -9
        assert len(left) == 1 and left[0].startswith(f"{ns.name}: pid {sleeper.pid} ")
        assert not ns.path.exists()
    finally:
        lab.teardown()


def test_the_agent_process_supervises_dhcpd_and_stops_it_on_sigterm(
    lan: Lan, start_agent: StartAgent
) -> None:
    agent = start_agent(
        dhcpd={"restart": "supervise", "binary": str(lan.dhcpd), "validate_binary": DHCPD,
               "args": [lan.interface], "health_timeout": HEALTH_TIMEOUT},
    )  # fmt: skip
    doc = agent.wait_for(lambda d: d["deployed"] is not None and d["dhcpd"].get("running"))
    first = doc["dhcpd"]["pid"]
    assert wait_until(lambda: lan.server.holds(first), timeout=5)
    assert agent.client.get("/healthz").json()["ok"] is True

    os.kill(first, signal.SIGKILL)  # dhcpd dies between deploys: the agent brings it back
    doc = agent.wait_for(lambda d: d["dhcpd"].get("running") and d["dhcpd"]["pid"] != first)
    second = doc["dhcpd"]["pid"]
    assert doc["dhcpd"]["unexpected_restarts"] == 1
    # "running" comes with the spawn; the wrapper's `ip netns exec` enters the
    # namespace a moment later, under the same pid.
    assert wait_until(lambda: lan.server.holds(second), timeout=5)

    assert agent.stop() == 0
    assert wait_until(lambda: not Path(f"/proc/{second}").exists(), timeout=5)
