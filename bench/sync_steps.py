"""Time one sync on the demo repo, split by step: `.venv/bin/python bench/sync_steps.py [N]`.

Builds the demo (./demo is not touched: a temp folder is used), then N times:
commits a changed host declaration, pushes, and syncs the primary. Prints the
median and p90 of each step and of the whole reconcile, and the same for a
sync with nothing new (fetch + render + compare only).
"""

from __future__ import annotations

import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

from agent import demo, reconcile


def quantiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[int(0.9 * (len(ordered) - 1))]


def report(name: str, runs: list[dict[str, float]]) -> None:
    print(f"\n{name} ({len(runs)} runs), milliseconds: median / p90")
    for step in runs[0]:
        med, p90 = quantiles([r[step] * 1000 for r in runs])
        print(f"  {step:<9} {med:8.1f} / {p90:8.1f}")


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "demo"
        demo.run(folder, io.StringIO())
        work = folder / "config"
        node = reconcile.Node.from_config(demo.config.load(folder / "primary" / "agent.toml"))
        hosts = work / "dhcp" / "hosts.conf"
        changed, current = [], []
        for i in range(n):
            demo._commit(work, hosts, hosts.read_text() + f"\n# change {i}\n")
            start = time.perf_counter()
            attempt = reconcile.reconcile(node)
            total = time.perf_counter() - start
            assert attempt.result == "deployed", attempt.message
            changed.append({**attempt.timings, "total": total})
            start = time.perf_counter()
            attempt = reconcile.reconcile(node)
            current.append({**attempt.timings, "total": time.perf_counter() - start})
    report("sync of a new commit", changed)
    report("sync with nothing new", current)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
