"""Scenario 5: a push to the failover pair, until both serve it and failover is normal again.

The pair's harness (lab/pair.py): a bridge, the primary 192.0.2.1 and the
secondary 192.0.2.2 in namespaces of their own, each with a real dhcpd and an
agent naming the other as its peer (rolling restart, failover_timeout set), the
example pair of repo-template. Per round: one host added, GitHub's webhook to
both agents, then the times until the primary's and the secondary's new dhcpd
serve it (their pid files, as everywhere), until both have recorded it, and
until OMAPI says normal/normal on both sides.

Then the floor, in the same lab after the agents are stopped: the same rolling
restart by hand, as a careful admin would do it: restart the primary, wait until
failover is normal and the primary has stayed up health_timeout (the agents'
rule), restart the secondary, wait for normal. Blocks, not interleaved: the
agents own the servers' dhcpd while they run.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from agent.errors import OmapiError
from agent.review.template import template_dir
from agent.servers.dhcpd import failover, omapi
from bench.agentproc import HEALTH_TIMEOUT, Tables, start_agent
from bench.lab import DHCPD, BenchError, DhcpdBox, Lab, open_lab, wait_live
from bench.pipelines import LIVE_TIMEOUT
from bench.push import Say
from bench.stats import comparison, summary
from lab.agent import AgentProcess
from lab.pair import PairLab, Server, build_pair_lab
from lab.ports import free_port
from lab.proc import read_pid
from lab.repo import ConfigRepo

PEER = "dhcp-failover"  # repo-template/pair.toml
FAILOVER_TIMEOUT = 30.0
NORMAL_TIMEOUT = 120.0
HOSTS = "dhcp/hosts.conf"
MAX_ROUNDS = 60  # fixed addresses 192.0.2.20-79, outside the pools


def run(rounds: int, floor_rounds: int, say: Say) -> dict[str, Any]:
    rounds, floor_rounds = min(rounds, MAX_ROUNDS), min(floor_rounds, MAX_ROUNDS - rounds)
    with open_lab() as lab:
        pair_lab = build_pair_lab(lab.netlab, lab.path("pairlab"), DHCPD)
        repo = ConfigRepo(lab.path("repo"), template_dir())
        repo.commit("The example pair")
        agents = _start_agents(lab, pair_lab, repo)
        started = time.perf_counter()
        wait_normal(pair_lab)
        say(f"pair: both agents deployed, failover normal ({time.perf_counter() - started:.1f} s)")
        rows = [_agent_round(lab, pair_lab, agents, repo, i, say) for i in range(rounds)]
        for agent in agents:
            agent.stop()  # SIGTERM: each stops its dhcpd
        boxes = [_floor_box(lab, server) for server in pair_lab.servers]
        floor = [_floor_round(pair_lab, boxes, repo, rounds + i, say) for i in range(floor_rounds)]
    return _figures(rows, floor)


# --- the agents -----------------------------------------------------------------


def _start_agents(lab: Lab, pair_lab: PairLab, repo: ConfigRepo) -> list[AgentProcess]:
    ports = {server.name: free_port() for server in pair_lab.servers}
    agents = []
    for server, other in zip(pair_lab.servers, reversed(pair_lab.servers), strict=True):
        home = lab.path(server.name)
        (home / "etc").mkdir()
        tables: Tables = {
            "node": {"name": server.name, "role": server.role},
            "source": {"url": repo.url, "branch": "main", "poll_interval": 0},
            "deploy": {"target": str(home / "etc" / "dhcp"), "state_dir": str(home / "state")},
            "dhcpd": {
                **server.dhcpd_section(),
                "lease_file": str(home / "dhcpd.leases"),
                "failover_timeout": FAILOVER_TIMEOUT,
            },
            "peer": {"status_url": f"http://127.0.0.1:{ports[other.name]}/status"},
        }
        agents.append(start_agent(lab, home, tables, port=ports[server.name], wait=False))
    for agent in agents:
        agent.wait_for(_serving, NORMAL_TIMEOUT)
    return agents


def _serving(doc: dict[str, Any]) -> bool:
    return doc["deployed"] is not None and doc["state"] == "idle" and doc["dhcpd"]["running"]


def _agent_round(
    lab: Lab, pair_lab: PairLab, agents: list[AgentProcess], repo: ConfigRepo, i: int, say: Say
) -> dict[str, float]:
    sha, mark = add_host(repo, i)
    targets = [a.state_dir.parent / "etc" / "dhcp" / "hosts.conf" for a in agents]
    watchers = [_LiveWatch(a.dhcpd_pid_file, t, mark) for a, t in zip(agents, targets, strict=True)]
    start = time.perf_counter()
    for agent in agents:  # the forge delivers to both hooks
        if agent.github_push(sha).status_code != 202:
            raise BenchError(f"pair: webhook to {agent.url} not accepted")
    primary_live, secondary_live = (w.result() for w in watchers)
    normal = wait_normal(pair_lab)  # both new dhcpd running: the secondary's says startup first
    for agent in agents:
        agent.wait_deployed(sha, NORMAL_TIMEOUT)
    recorded = time.perf_counter()  # the later of the two
    row = {
        "primary live": primary_live - start,
        "both live": max(primary_live, secondary_live) - start,
        "both recorded": recorded - start,
        "failover normal": normal - start,
        **_attempt_steps(agents),
    }
    row = {k: v * 1000 for k, v in row.items()}
    say(f"pair round {i + 1}: both live {row['both live']:.0f} ms, "
        f"failover normal {row['failover normal']:.0f} ms")  # fmt: skip
    return row


def _attempt_steps(agents: list[AgentProcess]) -> dict[str, float]:
    """The primary's restart and verify (failover wait), the secondary's wait for the primary."""
    primary, secondary = (agent.last_attempt().get("timings") or {} for agent in agents)
    return {
        "primary restart+verify": primary.get("restart", 0) + primary.get("verify", 0),
        "secondary waits for primary": secondary.get("peer", 0),
    }


class _LiveWatch:
    """wait_live in a thread: the two servers go live one after the other."""

    def __init__(self, pid_file: Path, config: Path, marker: str) -> None:
        self.seen: list[float] = []
        before = read_pid(pid_file)
        self.thread = threading.Thread(
            target=lambda: self.seen.append(
                wait_live(pid_file, before, config, marker, LIVE_TIMEOUT)
            ),
            daemon=True,
        )
        self.thread.start()

    def result(self) -> float:
        self.thread.join(LIVE_TIMEOUT + 5)
        if not self.seen:
            raise BenchError("pair: a server never went live on the pushed commit")
        return self.seen[0]


def add_host(repo: ConfigRepo, i: int) -> tuple[str, str]:
    """Commit one more host; (sha, the marker "live" looks for)."""
    repo.write(HOSTS, repo.read(HOSTS) + host_text(i))
    return repo.commit(f"Add bench-pair-{i}"), marker(i)


def host_text(i: int) -> str:
    return (
        f"\n{marker(i)}\n  hardware ethernet 02:00:00:00:03:{i:02x};\n"
        f"  fixed-address 192.0.2.{20 + i};\n}}\n"
    )


def marker(i: int) -> str:
    return f"host bench-pair-{i} {{"


def wait_normal(pair_lab: PairLab, timeout: float = NORMAL_TIMEOUT) -> float:
    """perf_counter() when both dhcpd say normal/normal over OMAPI."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _normal(pair_lab.servers):
            return time.perf_counter()
        time.sleep(0.05)
    raise BenchError(f"pair: failover not normal within {timeout:g} s")


def _normal(servers: tuple[Server, Server]) -> bool:
    try:
        states = [omapi.from_omapi(PEER, omshell=s.ns.argv("omshell")) for s in servers]
    except OmapiError:
        return False
    return failover.all_normal(states)


# --- the floor: the same rolling restart by hand ---------------------------------


def _floor_box(lab: Lab, server: Server) -> DhcpdBox:
    """The server's deployed tree, its dhcpd started by the restart script."""
    box = DhcpdBox(server.name, server.ns, lab.path(server.name), server.dhcpd)
    lab.boxes.append(box)
    box.restart()
    return box


def _floor_round(
    pair_lab: PairLab, boxes: list[DhcpdBox], repo: ConfigRepo, i: int, say: Say
) -> dict[str, float]:
    """A host added by hand to both live trees, then restart, wait, restart, wait."""
    wait_normal(pair_lab)
    for box in boxes:
        with (box.target / "hosts.conf").open("a") as hosts:
            hosts.write(host_text(i))
    start = time.perf_counter()
    lives = [_restart(boxes[0], marker(i))]
    wait_normal(pair_lab)
    # The agents' rule, kept by hand: the primary stays up health_timeout before the
    # secondary restarts (and a dhcpd that dies in that time is a rollback, not a go).
    time.sleep(max(0.0, lives[0] + HEALTH_TIMEOUT - time.perf_counter()))
    lives.append(_restart(boxes[1], marker(i)))
    normal = wait_normal(pair_lab)
    row = {
        "primary live": lives[0] - start,
        "both live": lives[1] - start,
        "failover normal": normal - start,
    }
    row = {k: v * 1000 for k, v in row.items()}
    say(f"pair floor round: both live {row['both live']:.0f} ms, "
        f"failover normal {row['failover normal']:.0f} ms")  # fmt: skip
    return row


def _restart(box: DhcpdBox, marker: str) -> float:
    before = read_pid(box.pid_file)
    box.restart()
    return wait_live(box.pid_file, before, box.target / "hosts.conf", marker, LIVE_TIMEOUT)


# --- figures ---------------------------------------------------------------------


def _figures(rows: list[dict[str, float]], floor: list[dict[str, float]]) -> dict[str, Any]:
    agent = {k: summary([r[k] for r in rows]) for k in (rows[0] if rows else {})}
    by_hand = {k: summary([r[k] for r in floor]) for k in (floor[0] if floor else {})}
    ratios = {
        k: comparison([r[k] for r in rows], [r[k] for r in floor])
        for k in ("both live", "failover normal")
        if rows and floor
    }
    return {
        "config": {
            "rounds": len(rows),
            "floor_rounds": len(floor),
            "failover_timeout": FAILOVER_TIMEOUT,
        },
        "agent_ms": agent,
        "floor_ms": by_hand,
        "ratios": ratios,
    }
