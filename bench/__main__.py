"""python -m bench [--quick | --smoke] [--out DIR] [--only NAME,...]: run the benchmarks.

Needs root (network and mount namespaces) and `scripts/setup.sh --bench`;
`scripts/bench.sh` does both. Writes OUT/benchmarks.json (every figure, raw
samples included), OUT/benchmarks.md (the tables and the targets) and
OUT/benchmarks.svg (the distributions). Progress goes to stderr.

    full     what docs/ holds: 30 pushes, 1,000 / 10,000 / 50,000 hosts, ...
    --quick  the same scenarios with fewer rounds, for a look in a few minutes
    --smoke  every code path once, on tiny inputs: the test suite runs this
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench import idle, pair, push, report, scale, storm, watched
from bench.plot import write_plot

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mode:
    push_rounds: int
    push_hosts: int
    ansible: tuple[bool, ...]  # gather_facts of each ansible-pull pipeline
    scale_sizes: tuple[int, ...]
    scale_rounds: int
    pair_rounds: int
    pair_floor_rounds: int
    storm: tuple[int, float, int]  # deliveries, seconds, commits
    idle_seconds: float
    idle_poll: float
    idle_ansible: bool
    watched_leases: int
    watched_requests: int
    settle: float  # seconds to let an agent settle before (idle) or after (storm) measuring
    warmup: int  # rounds run and dropped before push and scale measure


MODES = {
    "full": Mode(30, 200, (True, False), (1000, 10000, 50000), 9, 10, 10, (500, 5.0, 5),
                 60, 10, True, 50000, 30, 3.0, 1),
    "quick": Mode(5, 200, (True, False), (1000, 10000, 50000), 2, 3, 3, (500, 5.0, 5),
                  20, 10, True, 20000, 10, 3.0, 1),
    "smoke": Mode(1, 20, (False,), (100,), 1, 1, 1, (40, 0.5, 2), 3, 1, False, 200, 2, 0.5, 0),
}  # fmt: skip

Runner = Callable[[Mode, push.Say], dict[str, Any]]
SCENARIOS: dict[str, Runner] = {
    "push": lambda m, say: push.run(m.push_rounds, m.push_hosts, m.ansible, say, m.warmup),
    "scale": lambda m, say: scale.run(m.scale_sizes, m.scale_rounds, say, m.warmup),
    "pair": lambda m, say: pair.run(m.pair_rounds, m.pair_floor_rounds, say),
    "storm": lambda m, say: storm.run(*m.storm, hosts=m.push_hosts, settle=m.settle, say=say),
    "idle": lambda m, say: idle.run(m.idle_seconds, m.idle_poll, m.push_hosts, m.idle_ansible,
                                    m.settle, say),
    "watched": lambda m, say: watched.run(m.watched_leases, m.watched_requests, say),
}  # fmt: skip

INTRO = """\
# Benchmarks

Measured by `scripts/bench.sh` ({mode} run) on {date}, dhcp-gitops at `{commit}`,
in {duration}. The machine: {cpus} CPUs, shared with other work (load average
{load_before} before, {load_after} after), {kernel}; dhcpd {dhcpd}, ansible-core
{ansible}, {rsync}. Every comparison was measured in the same run, interleaved
round by round where the scenario allows: read the ratios, not the absolute times.
Every figure, raw samples included, is in [benchmarks.json](benchmarks.json)."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    mode_name = "quick" if args.quick else "smoke" if args.smoke else "full"
    mode = MODES[mode_name]
    names = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        print(f"bench: unknown scenario(s) {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)  # cleanup runs as for Ctrl-C
    meta = _meta(mode_name)
    started = time.monotonic()
    scenarios = {name: _run(name, mode) for name in names}
    meta |= _meta_after(time.monotonic() - started)
    _write(args.out, meta, scenarios)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer rounds (a few minutes)")
    size.add_argument("--smoke", action="store_true", help="every path once, tiny inputs")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="default: docs/")
    parser.add_argument("--only", help=f"comma-separated, of: {', '.join(SCENARIOS)}")
    return parser


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _say(text: str) -> None:
    print(f"bench {datetime.now().strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def _run(name: str, mode: Mode) -> dict[str, Any]:
    _say(f"--- {name}")
    start = time.monotonic()
    result = SCENARIOS[name](mode, _say)
    result["seconds"] = round(time.monotonic() - start, 1)
    _say(f"--- {name} done in {result['seconds']:.0f} s")
    return result


def _write(out: Path, meta: dict[str, Any], scenarios: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    found = report.targets(scenarios)
    doc = {"meta": meta, "targets": found, "scenarios": scenarios}
    report.write_json(out / "benchmarks.json", doc)
    plotted = write_plot(out / "benchmarks.svg", scenarios)
    report.write_markdown(out / "benchmarks.md", doc, "benchmarks.svg" if plotted else None, INTRO)
    for target in found:
        _say(f"{'met' if target['met'] else 'MISSED'}: {target['target']}: {target['shown']}")
    _say(f"wrote {out}/benchmarks.md, .json, .svg")


def _meta(mode: str) -> dict[str, Any]:
    return {
        "mode": mode,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _output(["git", "-C", str(ROOT), "describe", "--always", "--dirty"]),
        "cpus": os.cpu_count(),
        "load_before": _load(),
        "kernel": f"Linux {platform.release()}",
        "python": platform.python_version(),
        "dhcpd": _output(["dhcpd", "--version"]).removeprefix("isc-dhcpd-"),
        "ansible": _ansible_version(),
        "rsync": " ".join(_output(["rsync", "--version"]).split()[:3]),
    }


def _meta_after(seconds: float) -> dict[str, Any]:
    minutes, rest = divmod(int(seconds), 60)
    return {"seconds": round(seconds), "duration": f"{minutes} min {rest} s", "load_after": _load()}


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return "(missing)"
    return (done.stdout or done.stderr).strip()


def _ansible_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ansible-core")
    except PackageNotFoundError:
        return "(missing)"


if __name__ == "__main__":
    sys.exit(main())
