"""Scenarios 1-3: one commit per round, deployed by the floor, the agent, rsync and ansible-pull.

Each round pushes one change (one more host) and every pipeline deploys it in
turn, the order rotating from round to round, so that whatever else the shared
machine does falls on all of them alike. Ratios are taken round by round.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bench.lab import open_lab
from bench.pipelines import AgentPipe, Ansible, Floor, Pipeline, Rsync, Sample
from bench.repo import BenchRepo
from bench.stats import comparison, summary

Say = Callable[[str], None]


def rotated(items: Sequence[Pipeline], turn: int) -> list[Pipeline]:
    k = turn % len(items)
    return [*items[k:], *items[:k]]


def figures(samples: list[Sample]) -> dict[str, Any]:
    """The summary of totals, of each step and of each extra figure, in ms."""
    steps = list(dict.fromkeys(name for s in samples for name in s.steps))  # in step order
    extras = list(dict.fromkeys(name for s in samples for name in s.extra))
    return {
        "total_ms": summary([s.total_ms for s in samples]),
        "steps_ms": {n: summary([s.steps.get(n, 0.0) for s in samples]) for n in steps},
        "extra_ms": {n: summary([s.extra[n] for s in samples if n in s.extra]) for n in extras},
    }


def interleave(
    pipelines: Sequence[Pipeline],
    repo: BenchRepo,
    rounds: int,
    say: Say,
    label: str,
    warmup: int = 0,
) -> dict[str, list[Sample]]:
    """rounds changes, each deployed by every pipeline in rotating order.

    The first `warmup` rounds are run and dropped: first requests, cold caches.
    """
    samples: dict[str, list[Sample]] = {p.name: [] for p in pipelines}
    for turn in range(warmup + rounds):
        sha, marker = repo.change()
        done = {pipe.name: pipe.deploy(sha, marker) for pipe in rotated(pipelines, turn)}
        line = ", ".join(f"{name} {s.total_ms:.0f}" for name, s in done.items())
        if turn < warmup:
            say(f"{label} warm-up round (ms, dropped): {line}")
            continue
        for name, sample in done.items():
            samples[name].append(sample)
        say(f"{label} round {turn - warmup + 1}/{rounds} (ms): {line}")
    return samples


def run(
    rounds: int, hosts: int, ansible: Sequence[bool], say: Say, warmup: int = 1
) -> dict[str, Any]:
    """ansible: one ansible-pull pipeline per value of gather_facts (none: no ansible)."""
    with open_lab() as lab:
        repo = BenchRepo.create(lab.path("repo"), hosts)
        pipelines: list[Pipeline] = [Floor(lab, repo), AgentPipe(lab, repo), Rsync(lab, repo)]
        for gather in ansible:
            name = "ansible" if gather else "ansible-nofacts"
            pipelines.append(Ansible(lab, repo, gather, name))
        say(f"push: {len(pipelines)} pipelines ready, {hosts} hosts, {rounds} rounds")
        samples = interleave(pipelines, repo, rounds, say, "push", warmup)
    totals = {name: [s.total_ms for s in runs] for name, runs in samples.items()}
    ratios = {
        "agent/floor": comparison(totals["agent"], totals["floor"]),
        "agent/rsync": comparison(totals["agent"], totals["rsync"]),
    }
    for name in totals:
        if name.startswith("ansible"):
            ratios[f"{name}/agent"] = comparison(totals[name], totals["agent"])
    return {
        "config": {
            "hosts": hosts,
            "rounds": rounds,
            "warmup_rounds": warmup,
            "order": "rotating, one change per round",
        },
        "pipelines": {name: figures(runs) for name, runs in samples.items()},
        "ratios": ratios,
    }
