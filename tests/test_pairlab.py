"""The failover pair's harness itself (lab/pair.py): real agents, real dhcpd, real clients.

Two agents deploy the example pair (repo-template) into their own namespaces on
one bridged LAN; a client namespace asks for addresses with dhclient and floods
with perfdhcp. What the pair does beyond serving (failover states) is for
tests/test_failover.py.
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

from lab.agent import TOKEN
from lab.pair import PairLab
from lab.repo import ConfigRepo
from tests.conftest import StartPair

POOL = (ipaddress.IPv4Address("192.0.2.100"), ipaddress.IPv4Address("192.0.2.199"))
BEARER = {"Authorization": f"Bearer {TOKEN}"}
PRIMARYS_MAC = "02:00:00:00:01:02"  # hashes into the primary's half of the buckets
FIRST_LEASE_TIMEOUT = 15.0  # the pair may still be connecting when the first client asks

NEW_HOST = """
host laptop-42 {
  hardware ethernet 02:00:00:00:00:42;
  fixed-address 192.0.2.42;
}
"""


def in_pool(address: str | None) -> bool:
    return address is not None and POOL[0] <= ipaddress.IPv4Address(address) <= POOL[1]


def test_each_agent_runs_its_dhcpd_in_its_own_namespace(
    pair_lab: PairLab, start_pair: StartPair
) -> None:
    pair = start_pair()

    for agent, server, other in zip(
        pair.agents, pair_lab.servers, reversed(pair_lab.servers), strict=True
    ):
        doc = agent.status()
        assert doc["node"] == {"name": server.name, "role": server.role}
        pid = doc["dhcpd"]["pid"]
        assert Path(f"/proc/{pid}/exe").resolve().name == "dhcpd"
        assert server.ns.holds(pid) and not other.ns.holds(pid)
        assert f"Listening on LPF/{server.interface}/" in server.dhcpd_output()


def test_no_answer_is_none_within_the_timeout(pair_lab: PairLab) -> None:
    started = time.monotonic()

    assert pair_lab.dhcp_client("02:00:00:00:00:77", timeout=2.0) is None  # no server runs

    assert time.monotonic() - started < 5.0
    assert "DHCPDISCOVER on dc1" in pair_lab.client_log[-1]


def test_a_client_gets_a_pool_address_and_leaves_nothing_behind(
    pair_lab: PairLab, start_pair: StartPair
) -> None:
    start_pair()
    started = time.monotonic()

    address = pair_lab.dhcp_client("02:00:00:00:01:01", timeout=FIRST_LEASE_TIMEOUT)

    print(f"first lease {address} after {time.monotonic() - started:.1f} s")
    assert address is not None and in_pool(address), "\n".join(pair_lab.client_log)
    assert released(pair_lab, address), "\n".join(pair_lab.client_log)
    assert pair_lab.client.pids() == []  # dhclient is gone
    links = pair_lab.client.ip("-o", "link", "show")
    assert "dc1" not in links  # the macvlan too
    assert not list(pair_lab.tmp.glob("dhclient-*"))  # and its lease, pid and script files


def released(lab: PairLab, address: str, timeout: float = 2.0) -> bool:
    """A server logged the client's DHCPRELEASE (the output reaches its file through tee)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(f"DHCPRELEASE of {address} " in s.dhcpd_output() for s in lab.servers):
            return True
        time.sleep(0.05)
    return False


def commit_new_host(repo: ConfigRepo) -> str:
    repo.write("dhcp/hosts.conf", repo.read("dhcp/hosts.conf") + NEW_HOST)
    return repo.commit("Add laptop-42")


def test_a_host_added_by_commit_gets_its_fixed_address(
    pair_lab: PairLab, start_pair: StartPair, repo: ConfigRepo
) -> None:
    pair = start_pair()
    before = pair_lab.dhcp_client("02:00:00:00:00:42", timeout=FIRST_LEASE_TIMEOUT)
    assert in_pool(before), "\n".join(pair_lab.client_log)  # unknown yet: a pool address

    sha = commit_new_host(repo)
    # Both triggers at once: the forge's webhook to the primary, POST /sync to the secondary.
    assert pair.primary.github_push(sha).status_code == 202
    assert pair.secondary.client.post("/sync", headers=BEARER).status_code == 202
    pair.wait_deployed(sha)

    assert pair_lab.dhcp_client("02:00:00:00:00:42", timeout=FIRST_LEASE_TIMEOUT) == "192.0.2.42"


def test_perfdhcp_reports_its_exchanges(pair_lab: PairLab, start_pair: StartPair) -> None:
    start_pair()

    stats = pair_lab.perfdhcp(rate=20, seconds=3)

    print(f"perfdhcp 20/s for 3 s: {stats}")
    offers, acks = stats["DISCOVER-OFFER"], stats["REQUEST-ACK"]
    assert offers["sent"] >= 40  # about rate x seconds, less perfdhcp's ramp-up
    assert 0 < offers["received"] <= offers["sent"]
    assert 0 < acks["received"] <= acks["sent"] <= offers["received"]


def test_peers_point_each_agent_at_the_other(
    pair_lab: PairLab, start_pair: StartPair, repo: ConfigRepo
) -> None:
    # A fresh pair: the primary deploys first (its peer never deployed), the secondary after.
    pair = start_pair(peers=True)

    for agent, other in zip(pair.agents, reversed(pair.agents), strict=True):
        assert f'status_url = "{other.url}/status"' in agent.config.read_text()
    sha = commit_new_host(repo)
    pair.push(sha)
    pair.wait_deployed(sha)  # each restart waits for the other's (rolling restart)


def test_an_unplugged_primary_leaves_the_clients_to_the_secondary(
    pair_lab: PairLab, start_pair: StartPair
) -> None:
    start_pair()
    pair_lab.unplug(pair_lab.primary)
    started = time.monotonic()

    address = pair_lab.dhcp_client(PRIMARYS_MAC, timeout=FIRST_LEASE_TIMEOUT)

    print(f"lease from the secondary alone after {time.monotonic() - started:.1f} s")
    assert in_pool(address), "\n".join(pair_lab.client_log)
    assert f"DHCPACK of {address} from {pair_lab.secondary.address}" in pair_lab.client_log[-1]
    # The secondary first left this client to the primary (split 128: its hash
    # bucket is the primary's), then took it once its secs passed 3 (pair.toml).
    said = pair_lab.secondary.dhcpd_output()
    assert f"DHCPDISCOVER from {PRIMARYS_MAC} via eth0: load balance to peer" in said
