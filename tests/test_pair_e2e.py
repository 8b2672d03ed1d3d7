"""The failover pair end to end: two agents, two real dhcpd talking failover, a client.

Every dhcpd runs in its own network namespace of lab/pair.py, each agent
names the other as its peer (rolling restart) and checks failover is back to
normal after each restart (OMAPI, inside the server's namespace).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.errors import OmapiError
from agent.servers.dhcpd import failover, omapi
from lab.agent import AgentProcess
from lab.pair import Pair, PairLab
from lab.repo import ConfigRepo
from tests.conftest import StartPair

FAILOVER_TIMEOUT = 30.0
LAPTOP = ("02:00:00:00:00:43", "192.0.2.43")
DEPLOYS = 5


def start(start_pair: StartPair) -> Pair:
    return start_pair(peers=True, dhcpd={"failover_timeout": FAILOVER_TIMEOUT})


def omapi_normal(pair_lab: PairLab) -> bool:
    """Both dhcpd say normal/normal, asked live over OMAPI in their own namespaces."""
    try:
        states = [omapi.from_omapi("dhcp-failover", omshell=s.ns.argv("omshell"))
                  for s in pair_lab.servers]  # fmt: skip
    except OmapiError:
        return False
    return failover.all_normal(states)


def wait(condition: Any, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.1)
    return time.monotonic() - start


def last_attempt(agent: AgentProcess, sha: str) -> dict[str, Any]:
    doc = agent.wait_for(lambda d: (d["last_attempt"] or {}).get("sha") == sha
                         and d["state"] == "idle", timeout=60)  # fmt: skip
    attempt: dict[str, Any] = doc["last_attempt"]
    return attempt


def add_host(repo: ConfigRepo, mac: str, address: str, name: str) -> str:
    host = f"host {name} {{\n  hardware ethernet {mac};\n  fixed-address {address};\n}}\n"
    repo.write("dhcp/hosts.conf", repo.read("dhcp/hosts.conf") + "\n" + host)
    return repo.commit(f"Add {name}")


def test_a_push_reaches_both_servers_one_after_the_other(
    pair_lab: PairLab, start_pair: StartPair, repo: ConfigRepo
) -> None:
    pair = start(start_pair)
    wait(lambda: omapi_normal(pair_lab), 60, "failover normal after start")
    sha = add_host(repo, *LAPTOP, name="laptop-43")
    pushed = time.monotonic()
    pair.push(sha)
    pair.wait_deployed(sha, timeout=90)
    both_live = time.monotonic() - pushed
    back_to_normal = wait(lambda: omapi_normal(pair_lab), 60, "failover normal after deploy")
    primary, secondary = (last_attempt(a, sha) for a in pair.agents)
    assert primary["result"] == secondary["result"] == "deployed"
    assert "peer" in secondary["timings"]  # it waited for the primary before restarting
    assert primary["finished_at"] <= secondary["finished_at"]
    assert pair_lab.dhcp_client(LAPTOP[0], timeout=20) == LAPTOP[1]
    for agent in pair.agents:  # what each /status says of the pair, once it has looked
        doc = agent.wait_for(lambda d: (d["peer"] or {}).get("same_commit") is True
                             and any(f["mine"] == "normal" for f in d["failover"]))  # fmt: skip
        assert doc["peer"]["reachable"] and doc["peer"]["deployed_sha"] == sha
        assert doc["peer"]["clock_skew"] == "ok" and abs(doc["peer"]["clock_skew_seconds"]) < 1
        metrics = agent.client.get("/metrics").text
        assert "dhcp_gitops_peer_same_commit 1.0" in metrics
        assert (
            'dhcp_gitops_failover_state{peer="dhcp-failover",side="mine",state="normal"} 1.0'
            in metrics
        )
    print(f"push to both live {both_live:.2f} s; failover normal {back_to_normal:.2f} s later")


def test_a_bad_commit_is_refused_by_both_and_nothing_restarts(
    pair_lab: PairLab, start_pair: StartPair, repo: ConfigRepo
) -> None:
    pair = start(start_pair)
    pids = pair.dhcpd_pids()
    repo.replace("dhcp/hosts.conf", "fixed-address 192.0.2.10;", "fixed-address 192.0.2.10")
    sha = repo.commit("Typo")
    pair.push(sha)
    for agent in pair.agents:
        attempt = last_attempt(agent, sha)
        assert attempt["result"] == "refused" and attempt["step"] == "validate"
    assert pair.dhcpd_pids() == pids
    assert pair_lab.dhcp_client("02:00:00:00:00:01", timeout=20) == "192.0.2.10"


def test_a_commit_dhcpd_will_not_start_on_never_reaches_the_secondary(
    pair_lab: PairLab, start_pair: StartPair, repo: ConfigRepo
) -> None:
    """dhcpd -t passes, but without a subnet for its interface dhcpd will not start:
    the primary rolls back, and the secondary never restarts onto it."""
    pair = start(start_pair)
    good = pair.primary.status()["deployed"]["sha"]
    secondary_pid = pair.dhcpd_pids()[1]
    text = repo.read("dhcp/subnets.conf.j2")
    first, end = (
        text.index("subnet 192.0.2.0 "),
        text.index("\n}\n", text.index("subnet 192.0.2.0 ")),
    )
    repo.write("dhcp/subnets.conf.j2", text[:first] + text[end + 3 :])
    sha = repo.commit("Drop the first subnet")
    pair.push(sha)
    assert last_attempt(pair.primary, sha)["result"] == "rolled_back"
    refused = last_attempt(pair.secondary, sha)
    assert refused["result"] == "refused" and refused["step"] == "peer"
    assert "never restarts onto a commit its primary could not run" in refused["message"]
    assert pair.dhcpd_pids()[1] == secondary_pid
    for agent in pair.agents:
        assert agent.status()["deployed"]["sha"] == good
    assert pair_lab.dhcp_client("02:00:00:00:00:01", timeout=20) == "192.0.2.10"


def test_clients_keep_being_served_through_five_deploys(
    pair_lab: PairLab, start_pair: StartPair, repo: ConfigRepo, tmp_path: Path
) -> None:
    """perfdhcp at 50 new clients a second while 5 commits deploy one after the other.
    Measured and reported (tmp_path/continuity.json), not asserted: see docs/development.md."""
    pair = start(start_pair)
    wait(lambda: omapi_normal(pair_lab), 60, "failover normal after start")
    seconds = 40.0
    result: dict[str, Any] = {}
    flood = threading.Thread(target=lambda: result.update(pair_lab.perfdhcp(50, seconds)))
    flood.start()
    started = time.monotonic()
    deployed = 0
    for i in range(DEPLOYS):
        sha = add_host(repo, f"02:00:00:00:02:{i:02x}", f"192.0.2.{60 + i}", f"dev-{i}")
        pair.push(sha)
        pair.wait_deployed(sha, timeout=60)
        deployed += 1
        wait(lambda: omapi_normal(pair_lab), 60, "failover normal")
    took = time.monotonic() - started
    flood.join(seconds + 30)
    report = {"deploys": deployed, "deploy_seconds": round(took, 1), **result}
    (tmp_path / "continuity.json").write_text(json.dumps(report, indent=2))
    print("continuity:", json.dumps(report))
    assert deployed == DEPLOYS and took < seconds, "the deploys must fall inside the flood"
    assert result["DISCOVER-OFFER"]["sent"] > 0


def test_a_deploy_whose_failover_stays_down_is_rolled_back(
    pair_lab: PairLab, start_pair: StartPair, repo: ConfigRepo
) -> None:
    """The agents still see each other (loopback), but the servers' cable is cut: after
    its restart the primary's failover cannot get back to normal, so it rolls back."""
    pair = start_pair(peers=True, dhcpd={"failover_timeout": 5.0})
    wait(lambda: omapi_normal(pair_lab), 60, "failover normal after start")
    good = pair.primary.status()["deployed"]["sha"]
    pair_lab.unplug(pair_lab.secondary)
    sha = add_host(repo, "02:00:00:00:00:44", "192.0.2.44", "laptop-44")
    pair.push(sha)
    attempt = last_attempt(pair.primary, sha)
    assert attempt["result"] == "rolled_back"
    assert "failover did not return to normal within 5 s" in attempt["message"]
    assert pair.primary.status()["deployed"]["sha"] == good
    refused = last_attempt(pair.secondary, sha)
    assert refused["result"] == "refused" and refused["step"] == "peer"
