"""Two real agents run a Kea HA pair on the lab's LAN (lab/pair.py): each supervises its
kea-dhcp4 in its server's namespace, a push reaches both one after the other, HA is
load-balancing again after each restart, and a client is served throughout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lab.agent import AgentProcess
from lab.netns import dhcpd_wrapper
from lab.pair import PairLab
from lab.ports import free_port
from lab.repo import ConfigRepo
from tests.conftest import StartAgent, _listen_at, _peer_sections
from tests.test_kea_ha import KEA, kea_pair_repo

LAPTOP = "02:00:00:00:43:01"
HA_TIMEOUT = 30.0  # seconds a restarted server's HA has to be load-balancing again


@pytest.fixture
def repo(tmp_path: Path) -> ConfigRepo:
    return kea_pair_repo(tmp_path)


def start_kea_pair(
    pair_lab: PairLab, start_agent: StartAgent, tmp_path: Path
) -> list[AgentProcess]:
    ports = {server.name: free_port() for server in pair_lab.servers}
    agents = []
    for server, other in zip(pair_lab.servers, reversed(pair_lab.servers), strict=True):
        home = tmp_path / server.name
        wrapper = dhcpd_wrapper(tmp_path / f"kea-in-{server.name}", server.ns, KEA)
        kea = {"restart": "supervise", "binary": str(wrapper), "validate_binary": KEA,
               "health_timeout": 1.0, "ha_timeout": HA_TIMEOUT,
               "control_socket": str(home / "kea.sock")}  # fmt: skip
        sections: dict[str, Any] = {"node": {"server": "kea"}, "kea": kea,
                                    "deploy": {"target": str(home / "etc" / "kea")}}  # fmt: skip
        sections |= _peer_sections(ports[server.name], ports[other.name], {})
        agent = start_agent(server.name, server.role, wait=False, **sections)
        _listen_at(agent, ports[server.name])
        agents.append(agent)
    return agents


def load_balancing(doc: dict[str, Any]) -> bool:
    return any(f["mine"] == "load-balancing" for f in doc["failover"])


def wait_all(agents: list[AgentProcess], check: Callable[[dict[str, Any]], bool]) -> None:
    for agent in agents:
        agent.wait_for(check, timeout=60)


def test_a_push_reaches_both_kea_servers_and_clients_stay_served(
    pair_lab: PairLab, start_agent: StartAgent, repo: ConfigRepo, tmp_path: Path
) -> None:
    agents = start_kea_pair(pair_lab, start_agent, tmp_path)
    started = time.monotonic()
    wait_all(agents, lambda d: d["deployed"] is not None and load_balancing(d))
    print(f"both deployed and load-balancing {time.monotonic() - started:.1f} s after start")
    assert pair_lab.dhcp_client(LAPTOP, timeout=20) is not None
    repo.replace("dhcp/kea-dhcp4.conf.j2", '"valid-lifetime": 3600', '"valid-lifetime": 4000')
    sha = repo.commit("Longer leases")
    pushed = time.monotonic()
    for agent in agents:
        assert agent.github_push(sha).status_code == 202
    for agent in agents:
        agent.wait_deployed(sha, timeout=120)
    both = time.monotonic() - pushed
    primary, secondary = (a.last_attempt() for a in agents)
    assert primary["result"] == secondary["result"] == "deployed"
    assert "peer" in secondary["timings"]  # it waited for the primary before restarting
    assert primary["finished_at"] <= secondary["finished_at"]
    wait_all(agents, load_balancing)
    assert pair_lab.dhcp_client(LAPTOP, timeout=20) is not None
    print(f"push to both deployed, each after HA was load-balancing: {both:.1f} s")
