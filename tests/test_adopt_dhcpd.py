"""An agent restart keeps DHCP up: the next agent adopts the dhcpd the last one left.

Real `dhcp-gitops agent` processes with restart = "supervise", each dhcpd inside
the test's network namespace (tests/netns.py). The first agent is SIGKILLed or
hands dhcpd over (SIGUSR2, the unit's RestartKillSignal); the next one finds the
dhcpd running the recorded tree and watches it instead of restarting it. dhcpd's
output reaches the agents' logs through the FIFO in the state dir, also the
lines it wrote while no agent ran (agent/servers/dhcpd/output.py).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from agent.engine.reconcile import Node, reconcile
from agent.servers import dhcpd
from agent.servers.dhcpd.restart import Supervisor
from lab.agent import AgentProcess
from lab.netns import DHCPD, Lan
from lab.proc import dhcpd_pids_using, wait_until
from lab.repo import ConfigRepo
from tests.conftest import NodeFactory, StartAgent

HEALTH_TIMEOUT = 0.6
CLIENT_MAC = "02:00:00:00:07:01"
DHCLIENT_SECONDS = 4.0


def supervised(lan: Lan) -> dict[str, Any]:
    return {"restart": "supervise", "binary": str(lan.dhcpd), "validate_binary": DHCPD,
            "args": [lan.interface], "health_timeout": HEALTH_TIMEOUT}  # fmt: skip


def running_pid(agent: AgentProcess, lan: Lan) -> int:
    """The pid /status reports once this agent's reconcile is over, dhcpd running in the
    lan (before it, state.json may hold the last agent's attempt)."""
    doc = agent.wait_for(
        lambda d: d["reconciles"] >= 1 and d["state"] == "idle" and d["dhcpd"].get("running")
    )
    pid: int = doc["dhcpd"]["pid"]
    # "running" comes with the spawn; `ip netns exec` enters the namespace a moment later.
    assert wait_until(lambda: lan.server.holds(pid), timeout=5)
    return pid


def kill(agent: AgentProcess) -> None:
    os.kill(agent.proc.pid, signal.SIGKILL)
    agent.proc.wait(10)


def new_commit(repo: ConfigRepo, n: int) -> str:
    repo.write("dhcp/hosts.conf", repo.read("dhcp/hosts.conf") + f"\n# change {n}\n")
    return repo.commit(f"Change {n}")


def dhclient(lan: Lan, work: Path) -> None:
    """A DHCP client in the lan's client namespace for a few seconds: its DISCOVERs are
    what dhcpd logs. Its files are the test's own; its script records, configures nothing."""
    work.mkdir()
    script = work / "script"
    script.write_text(f'#!/bin/sh\necho "$reason" >> {shlex.quote(str(work / "record"))}\n')
    script.chmod(0o755)
    (work / "dhclient.conf").write_text("timeout 3;\nretry 1;\ninitial-interval 1;\n")
    lan.client.ip("link", "set", lan.client_interface, "address", CLIENT_MAC)
    files = ["-cf", str(work / "dhclient.conf"), "-sf", str(script),
             "-lf", str(work / "leases"), "-pf", str(work / "pid")]  # fmt: skip
    client = subprocess.Popen(
        lan.client.argv("dhclient", "-d", "-1", "-v", *files, lan.client_interface),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(DHCLIENT_SECONDS)
    finally:
        client.kill()  # by pid: `ip netns exec` exec'd it
        client.wait(5)


def test_a_killed_agents_dhcpd_is_adopted_and_keeps_serving(
    lan: Lan, start_agent: StartAgent, repo: ConfigRepo, tmp_path: Path
) -> None:
    first = start_agent(dhcpd=supervised(lan))
    pid = running_pid(first, lan)
    # dhcpd's own lines are in the agent's log (the journal, podman logs), at INFO.
    assert "INFO agent.servers.dhcpd.output: dhcpd: Listening on LPF/eth0/" in first.output()

    kill(first)
    dhclient(lan, tmp_path / "client")  # dhcpd logs while no agent reads its output
    assert lan.server.holds(pid)

    second = start_agent(dhcpd=supervised(lan))
    assert running_pid(second, lan) == pid  # not restarted
    doc = second.status()
    assert doc["dhcpd"]["unexpected_restarts"] == 0
    assert doc["last_attempt"]["result"] == "current"
    log = second.output()
    assert f"adopted dhcpd pid {pid}, left running on the deployed tree" in log
    assert f"dhcpd: DHCPDISCOVER from {CLIENT_MAC} via eth0" in log  # written meanwhile
    assert dhcpd_pids_using(str(tmp_path)) == [pid]

    sha = new_commit(repo, 1)  # a push deploys, and restarts the adopted dhcpd
    assert second.github_push(sha).status_code == 202
    second.wait_deployed(sha)
    restarted = running_pid(second, lan)
    assert restarted != pid
    assert wait_until(lambda: dhcpd_pids_using(str(tmp_path)) == [restarted])

    assert second.stop() == 0  # SIGTERM: the agent stops its dhcpd
    assert wait_until(lambda: not dhcpd_pids_using(str(tmp_path)), timeout=5)


def test_an_adopted_dhcpd_that_dies_is_revived(
    lan: Lan, start_agent: StartAgent, tmp_path: Path
) -> None:
    first = start_agent(dhcpd=supervised(lan))
    pid = running_pid(first, lan)
    kill(first)
    second = start_agent(dhcpd=supervised(lan))
    assert running_pid(second, lan) == pid

    os.kill(pid, signal.SIGKILL)  # not the agent's child: seen through its pidfd
    doc = second.wait_for(lambda d: d["dhcpd"].get("running") and d["dhcpd"]["pid"] != pid)
    assert doc["dhcpd"]["unexpected_restarts"] == 1
    revived = doc["dhcpd"]["pid"]
    assert wait_until(lambda: dhcpd_pids_using(str(tmp_path)) == [revived], timeout=5)


def test_a_hand_off_leaves_dhcpd_running_for_the_next_agent(
    lan: Lan, start_agent: StartAgent, tmp_path: Path
) -> None:
    """SIGUSR2 (what `systemctl restart` sends, packaging/dhcp-gitops.service): the agent
    exits 0 and dhcpd serves on; SIGTERM (`systemctl stop`) stops both."""
    first = start_agent(dhcpd=supervised(lan))
    pid = running_pid(first, lan)
    first.proc.send_signal(signal.SIGUSR2)
    assert first.proc.wait(30) == 0
    assert f"leaving dhcpd pid {pid} running for the next agent to adopt" in first.output()
    assert lan.server.holds(pid)

    second = start_agent(dhcpd=supervised(lan))
    assert running_pid(second, lan) == pid
    assert second.stop() == 0
    assert wait_until(lambda: not dhcpd_pids_using(str(tmp_path)), timeout=5)


def test_a_dhcpd_on_a_tree_changed_since_the_record_is_restarted(
    lan: Lan, start_agent: StartAgent, tmp_path: Path
) -> None:
    """Adoption only for the recorded tree: a hand edit meanwhile means dhcpd may serve
    what nobody verified, so it is stopped and the reconcile deploys the branch again."""
    first = start_agent(dhcpd=supervised(lan))
    pid = running_pid(first, lan)
    kill(first)
    target = tmp_path / "dhcp1" / "etc" / "dhcp"
    (target / "hosts.conf").write_text((target / "hosts.conf").read_text() + "# by hand\n")

    second = start_agent(dhcpd=supervised(lan))
    doc = second.wait_for(lambda d: d["live"]["drift"] == "none" and d["state"] == "idle")
    assert doc["last_attempt"]["result"] == "deployed"
    now = running_pid(second, lan)
    assert now != pid
    assert f"stopping dhcpd pid {pid}, left running by a previous agent" in second.output()
    assert wait_until(lambda: dhcpd_pids_using(str(tmp_path)) == [now])


# --- the Supervisor in this process: what is adopted, and what is not ------------------


@pytest.fixture
def nodes(make_node: NodeFactory, lan: Lan, tmp_path: Path) -> Any:
    """Nodes of one server, as successive agents would build them; all stopped after."""
    made: list[Node] = []

    def make(**keys: Any) -> Node:
        node = make_node(dhcpd={**supervised(lan), **keys})
        made.append(node)
        return node

    yield make
    for node in made:
        node.server.stop()
    assert not dhcpd_pids_using(str(tmp_path))


def supervisor(node: Node) -> Supervisor:
    assert isinstance(node.server, dhcpd.Server)
    assert isinstance(node.server.restarter, Supervisor)
    return node.server.restarter


def abandon(node: Node) -> int:
    """What an agent's death does to its Supervisor: dhcpd runs on, nobody reads it."""
    sup = supervisor(node)
    assert sup.proc is not None and sup.alive()
    pid = sup.proc.pid
    sup.outlet.close()
    sup.proc = None
    return pid


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie (this test process is its parent)."""
    try:
        return not Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return True


def test_a_dhcpd_started_with_other_arguments_is_not_adopted(
    nodes: Any, lan: Lan, caplog: pytest.LogCaptureFixture
) -> None:
    first = nodes()
    assert reconcile(first).result == "deployed"
    pid = abandon(first)

    second = nodes(args=[lan.interface, "-4"])  # [dhcpd] args changed in agent.toml
    assert not second.server.adopt()
    assert f"not adopting dhcpd pid {pid}: it was started with other arguments" in caplog.text
    second.server.start()
    assert supervisor(second).alive()
    assert wait_until(lambda: gone(pid), timeout=15)  # stopped, as before adoption existed


def test_a_dhcpd_that_does_not_write_to_the_fifo_is_not_adopted(
    nodes: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """One started by an agent of before the FIFO: its output goes nowhere we read."""
    first = nodes()
    assert reconcile(first).result == "deployed"
    pid = abandon(first)
    fifo = supervisor(first).outlet.path
    fifo.unlink()
    os.mkfifo(fifo, 0o600)  # a new FIFO at the path: dhcpd still writes to the old one

    second = nodes()
    assert not second.server.adopt()
    assert f"not adopting dhcpd pid {pid}: its output does not go to {fifo}" in caplog.text
    second.server.start()
    assert wait_until(lambda: gone(pid), timeout=15)
