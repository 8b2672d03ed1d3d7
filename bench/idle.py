"""Scenario 7: what an agent costs while nothing changes, beside what the others cost.

The agent as deployed (dhcpd supervised, HTTP API up) polls every 10 s with
nothing new on the remote. Over 60 s, sampled every second: its RSS and CPU
time, with GIT_TRACE recording every git command it runs, to show that the
poll only asks (ls-remote) and never fetches. Beside it, the same figures for
the rsync pipeline's watch loop (sh + inotifywait) and the dhcpd they serve,
and the cost of one `ansible-pull --only-if-changed` run with nothing new: what
polling with ansible-pull at the same interval would cost.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import time
from pathlib import Path
from typing import Any

from bench.agentproc import box_config, start_agent
from bench.lab import Lab, open_lab
from bench.pipelines import Ansible, Rsync
from bench.push import Say
from bench.repo import BenchRepo
from bench.stats import summary
from lab.proc import cpu_seconds, proc_status, read_pid

_GIT_COMMAND = re.compile(r"trace: built-in: git (\S+)")
Doc = dict[str, Any]


def run(
    seconds: float, poll: float, hosts: int, ansible: bool, settle: float, say: Say
) -> dict[str, Any]:
    """settle: seconds after start-up before measuring."""
    with open_lab() as lab:
        repo = BenchRepo.create(lab.path("repo"), hosts)
        box = lab.box("idle")
        trace = box.home / "git-trace.log"
        tables = box_config(box, repo.url, source={"poll_interval": poll})
        agent = start_agent(lab, box.home, tables, env={"GIT_TRACE": str(trace)})
        rsync = Rsync(lab, repo)
        time.sleep(settle)
        say(f"idle: measuring for {seconds:g} s, poll every {poll:g} s")
        fetch_head = agent.state_dir / "mirror.git" / "FETCH_HEAD"
        fetched_before = _mtime(fetch_head)
        trace_from = trace.stat().st_size
        attempts_before = len(agent.history())
        watched = {
            "agent": [agent.pid],
            "rsync watch loop": _session(rsync.proc.pid),
            "dhcpd (the agent's)": [read_pid(agent.dhcpd_pid_file) or 0],
        }
        result = _sample(watched, seconds)
        commands = _git_commands(trace, trace_from)
        result |= {
            "config": {"seconds": seconds, "poll_interval": poll, "hosts": hosts},
            "git_commands": commands,
            "fetched": _mtime(fetch_head) != fetched_before or commands.get("fetch", 0) > 0,
            "reconciles": len(agent.history()) - attempts_before,
        }
        if ansible:
            result["ansible-pull -o, nothing new"] = _ansible_poll(lab, repo, say)
    return result


def _sample(watched: dict[str, list[int]], seconds: float) -> dict[str, Any]:
    """RSS every second (MB) and CPU over the window (% of one core) of each group."""
    cpu0 = {name: _cpu(pids) for name, pids in watched.items()}
    rss: dict[str, list[float]] = {name: [] for name in watched}
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        for name, pids in watched.items():
            rss[name].append(sum(proc_status(p).get("VmRSS", 0) for p in pids) / 1024)
        time.sleep(1.0)
    elapsed = time.monotonic() - start
    cpu1 = {name: _cpu(pids) for name, pids in watched.items()}
    return {
        "rss_mb": {name: summary(values) for name, values in rss.items()},
        "cpu_percent": {name: _percent(cpu0[name], cpu1[name], elapsed) for name in watched},
        "agent_hwm_mb": proc_status(watched["agent"][0]).get("VmHWM", 0) / 1024,
    }


def _percent(before: tuple[float, float], after: tuple[float, float], elapsed: float) -> Doc:
    """CPU time over the window as % of one core: own, and with reaped children (git)."""
    return {
        "own": 100 * (after[0] - before[0]) / elapsed,
        "with_children": 100 * (after[1] - before[1]) / elapsed,
    }


def _cpu(pids: list[int]) -> tuple[float, float]:
    own = children = 0.0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            a, b = cpu_seconds(pid)
            own, children = own + a, children + b
    return own, children


def _session(sid: int) -> list[int]:
    """The processes of a session we started (the watch loop and its inotifywait)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(entry.name)) == sid:
                    pids.append(int(entry.name))
    return pids


def _git_commands(trace: Path, start: int) -> dict[str, int]:
    """How many times each git command ran (GIT_TRACE's "built-in: git NAME" lines)."""
    with trace.open("rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    counts: dict[str, int] = {}
    for found in _GIT_COMMAND.finditer(text):
        counts[found[1]] = counts.get(found[1], 0) + 1
    return counts


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


def _ansible_poll(lab: Lab, repo: BenchRepo, say: Say) -> dict[str, float]:
    """One ansible-pull --only-if-changed with nothing new: wall and CPU seconds."""
    pipe = Ansible(lab, repo, gather=True, name="idle-ansible")
    say("idle: one ansible-pull -o with nothing new")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    pipe.poll_unchanged()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"wall_s": wall, "cpu_s": cpu}
