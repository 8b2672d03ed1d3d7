"""Scenario 4: push-to-live at 1,000, 10,000 and 50,000 static hosts, against dhcpd's own cost.

Per size, a repo with that many host declarations, the floor and the agent
(interleaved as in bench/push.py); the yardsticks are the floor's own steps on
the same config: `dhcpd -t` alone, and `dhcpd -t` + restart. The agent's peak
RSS is its VmHWM after the rounds. When the agent takes more than the target
(1.5x dhcpd -t + restart), one reconcile is profiled with pyinstrument.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.lab import open_lab
from bench.pipelines import AgentPipe, Floor, Sample
from bench.profile import profile_reconcile
from bench.push import Say, figures, interleave
from bench.repo import BenchRepo
from bench.stats import comparison
from lab.proc import proc_status, read_pid

TARGET = 1.5  # agent push-to-live / (dhcpd -t + restart)


def run(
    sizes: Sequence[int], rounds: int, say: Say, warmup: int = 1, profile: bool = True
) -> dict[str, Any]:
    sized = {str(n): one_size(n, rounds, say, warmup, profile) for n in sizes}
    return {"config": {"rounds": rounds, "warmup_rounds": warmup}, "sizes": sized}


def one_size(hosts: int, rounds: int, say: Say, warmup: int, profile: bool) -> dict[str, Any]:
    with open_lab() as lab:
        repo = BenchRepo.create(lab.path("repo"), hosts)
        floor, agent = Floor(lab, repo), AgentPipe(lab, repo)
        say(f"scale: {hosts} hosts ready")
        samples = interleave([floor, agent], repo, rounds, say, f"scale {hosts}", warmup)
        memory = agent.agent.memory()
        dhcpd_memory = _dhcpd_memory(agent)
        result = _figures(samples, memory, dhcpd_memory)
        result["config_bytes"] = (repo.repo.work / "dhcp" / "dhcpd.conf").stat().st_size
        if profile and result["ratios"]["agent/(dhcpd -t + restart)"]["paired"] > TARGET:
            say(f"scale {hosts}: over {TARGET}x, profiling one reconcile")
            result["profile"] = profile_reconcile(lab, repo)
    return result


def _figures(
    samples: dict[str, list[Sample]], memory: dict[str, int], dhcpd_memory: dict[str, int]
) -> dict[str, Any]:
    agent = [s.total_ms for s in samples["agent"]]
    check = [s.steps["dhcpd -t"] for s in samples["floor"]]
    check_restart = [s.steps["dhcpd -t"] + s.steps["restart"] for s in samples["floor"]]
    return {
        "pipelines": {name: figures(runs) for name, runs in samples.items()},
        "yardsticks_ms": {"dhcpd -t": check, "dhcpd -t + restart": check_restart},
        "ratios": {
            "agent/(dhcpd -t)": comparison(agent, check),
            "agent/(dhcpd -t + restart)": comparison(agent, check_restart),
            "agent/floor": comparison(agent, [s.total_ms for s in samples["floor"]]),
        },
        "agent_memory_kb": memory,
        "dhcpd_memory_kb": dhcpd_memory,
    }


def _dhcpd_memory(agent: AgentPipe) -> dict[str, int]:
    """The supervised dhcpd's own RSS on this config, for scale."""
    pid = read_pid(agent.agent.dhcpd_pid_file)
    return proc_status(pid) if pid else {}
