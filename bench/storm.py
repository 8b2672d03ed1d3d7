"""Scenario 6: 500 signed webhook deliveries in 5 s while commits land and reconciles run.

A burst of merges (a few commits pushed in the first second), and for 5 s a
steady stream of GitHub push deliveries, each signed and with a delivery id of
its own, naming the newest commit pushed so far: a forge's retries, several
hooks on one repo, a busy team. Sent open-loop on a fixed schedule by several
senders, so a slow answer does not slow the stream. Measured: each delivery's
response time (against signed pings to the idle agent before the storm), the
reconciles the storm caused, and whether the newest commit is live at the end.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.agentproc import RECORD_TIMEOUT, box_config, start_agent
from bench.lab import BenchError, open_lab, wait_live
from bench.pipelines import LIVE_TIMEOUT
from bench.push import Say
from bench.repo import BenchRepo
from bench.stats import comparison, ms_since, summary
from lab.agent import AgentProcess
from lab.forge import github_ping, github_push
from lab.proc import read_pid

SENDERS = 10
COMMIT_EVERY = 0.2  # seconds between the commits of the burst
BASELINE = 50  # pings to the idle agent


@dataclass
class Stream:
    """The deliveries' schedule and what came back; the newest sha is updated by the pusher."""

    count: int
    seconds: float
    newest: str
    times_ms: list[float] = field(default_factory=list)
    codes: Counter[int] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, agent: AgentProcess, sender: int, start: float) -> None:
        with httpx.Client(base_url=agent.url, timeout=30) as client:
            for i in range(sender, self.count, SENDERS):
                delay = start + i * self.seconds / self.count - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                body, headers = github_push(self.newest, f"storm-{i}")
                sent = time.perf_counter()
                code = client.post("/webhook/github", content=body, headers=headers).status_code
                with self.lock:
                    self.times_ms.append(ms_since(sent))
                    self.codes[code] += 1


def run(
    deliveries: int, seconds: float, commits: int, hosts: int, settle: float, say: Say
) -> dict[str, Any]:
    """settle: seconds after the newest commit is recorded in which a stray reconcile shows."""
    with open_lab() as lab:
        repo = BenchRepo.create(lab.path("repo"), hosts)
        box = lab.box("storm")
        agent = start_agent(lab, box.home, box_config(box, repo.url))
        idle = _pings(agent)
        before = agent.status()["reconciles"]
        stream = Stream(deliveries, seconds, agent.status()["deployed"]["sha"])
        say(f"storm: {deliveries} deliveries over {seconds:g} s, {commits} commits")
        live_after = _storm(agent, repo, box.target / "dhcpd.conf", stream, commits)
        agent.wait_deployed(stream.newest, RECORD_TIMEOUT)
        time.sleep(settle)
        doc = agent.status()
        history = agent.history()
    return {
        "config": {
            "deliveries": deliveries,
            "seconds": seconds,
            "commits": commits,
            "senders": SENDERS,
            "hosts": hosts,
        },
        "response_ms": summary(stream.times_ms),
        "idle_ping_ms": summary(idle),
        "response_vs_idle": comparison(stream.times_ms, idle),
        "codes": {str(code): n for code, n in sorted(stream.codes.items())},
        "reconciles": doc["reconciles"] - before,
        "results": dict(Counter(a["result"] for a in history[-(doc["reconciles"] - before) :])),
        "newest_live": doc["deployed"]["sha"] == stream.newest,
        "newest_live_after_last_push_ms": live_after,
    }


def _pings(agent: AgentProcess) -> list[float]:
    """Signed pings, one after the other, to the idle agent: the webhook path at rest."""
    times = []
    with httpx.Client(base_url=agent.url, timeout=30) as client:
        for i in range(BASELINE):
            body, headers = github_ping(f"ping-{i}")
            start = time.perf_counter()
            client.post("/webhook/github", content=body, headers=headers)
            times.append(ms_since(start))
    return times


def _storm(
    agent: AgentProcess, repo: BenchRepo, config: Path, stream: Stream, commits: int
) -> float:
    """Run the stream and the burst of commits; ms from the last push to its commit live."""
    start = time.perf_counter() + 0.05
    senders = [
        threading.Thread(target=stream.send, args=(agent, k, start), daemon=True)
        for k in range(SENDERS)
    ]
    for thread in senders:
        thread.start()
    marker = ""
    for k in range(commits):  # the burst: one merge after the other, in the first second
        time.sleep(max(0.0, start + k * COMMIT_EVERY - time.perf_counter()))
        stream.newest, marker = repo.change()
    pushed, before = time.perf_counter(), read_pid(agent.dhcpd_pid_file)
    live: list[float] = []
    watcher = threading.Thread(
        target=lambda: live.append(
            wait_live(agent.dhcpd_pid_file, before, config, marker, LIVE_TIMEOUT, passing=True)
        ),
        daemon=True,
    )
    watcher.start()
    for thread in senders:
        thread.join(stream.seconds + 60)
    watcher.join(LIVE_TIMEOUT)
    if not live:
        raise BenchError("the newest commit of the storm never went live")
    return (live[0] - pushed) * 1000
