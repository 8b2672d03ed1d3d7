"""The latency distributions behind the tables: one panel per scenario, an SVG."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

Doc = dict[str, Any]
plt.rcParams["svg.fonttype"] = "none"  # text stays text: a smaller, searchable SVG


def write_plot(path: Path, scenarios: Doc) -> bool:
    """One panel per scenario present; False when there is nothing to draw."""
    panels: list[tuple[str, Callable[[Axes, Doc], None]]] = [
        ("push", _push), ("scale", _scale), ("pair", _pair),
        ("storm", _storm), ("idle", _idle), ("watched", _watched),
    ]  # fmt: skip
    present = [(name, draw) for name, draw in panels if name in scenarios]
    if not present:
        return False
    cols = 2
    rows = (len(present) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(12, 4.2 * rows), squeeze=False)
    for ax, (name, draw) in zip(axes.flat, present, strict=False):
        draw(ax, scenarios[name])
    for ax in list(axes.flat)[len(present) :]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, format="svg")
    plt.close(fig)
    return True


def _boxes(ax: Axes, data: dict[str, list[float]], title: str, unit: str = "ms") -> None:
    """Box plots with every sample drawn over them; log scale when the spread is wide."""
    labels = list(data)
    values = [data[k] for k in labels]
    ax.boxplot(values, showfliers=False)
    for i, samples in enumerate(values, start=1):
        ax.scatter([i] * len(samples), samples, s=8, alpha=0.5)
    ax.set_xticks(range(1, len(labels) + 1), labels, rotation=15)
    flat = [v for vs in values for v in vs if v > 0]
    if flat and max(flat) / min(flat) > 20:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)  # a linear axis from zero: no difference drawn larger than it is
    ax.set_ylabel(unit)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)


def _push(ax: Axes, push: Doc) -> None:
    data = {name: fig["total_ms"]["samples"] for name, fig in push["pipelines"].items()}
    _boxes(ax, data, "1-3. push to live, per pipeline")


def _scale(ax: Axes, scale: Doc) -> None:
    sizes = sorted(scale["sizes"], key=int)
    series: dict[str, Callable[[Doc], list[float]]] = {
        "dhcpd -t": lambda f: f["yardsticks_ms"]["dhcpd -t"],
        "dhcpd -t + restart": lambda f: f["yardsticks_ms"]["dhcpd -t + restart"],
        "floor": lambda f: f["pipelines"]["floor"]["total_ms"]["samples"],
        "agent": lambda f: f["pipelines"]["agent"]["total_ms"]["samples"],
    }
    xs = [int(n) for n in sizes]
    for label, pick in series.items():
        samples = [sorted(pick(scale["sizes"][n])) for n in sizes]
        p50 = [s[len(s) // 2] for s in samples]
        low = [m - s[0] for m, s in zip(p50, samples, strict=True)]
        high = [s[-1] - m for m, s in zip(p50, samples, strict=True)]
        ax.errorbar(xs, p50, yerr=[low, high], marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("static hosts")
    ax.set_ylabel("ms (median, min-max)")
    ax.set_title("4. scale")
    ax.legend()
    ax.grid(True, alpha=0.3)


def _pair(ax: Axes, pair: Doc) -> None:
    data: dict[str, list[float]] = {}
    for key in ("both live", "failover normal"):
        if key in pair["agent_ms"]:
            data[f"agents: {key}"] = pair["agent_ms"][key]["samples"]
        if key in pair["floor_ms"]:
            data[f"by hand: {key}"] = pair["floor_ms"][key]["samples"]
    _boxes(ax, data, "5. failover pair, from the push")


def _storm(ax: Axes, storm: Doc) -> None:
    for label, samples in (
        ("storm deliveries", storm["response_ms"]["samples"]),
        ("idle agent, pings", storm["idle_ping_ms"]["samples"]),
    ):
        ordered = sorted(samples)
        n = len(ordered)
        ax.step(ordered, [(i + 1) / n for i in range(n)], where="post", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("response time, ms")
    ax.set_ylabel("fraction of deliveries")
    ax.set_title(f"6. webhook storm: {storm['reconciles']} reconciles")
    ax.legend()
    ax.grid(True, alpha=0.3)


def _idle(ax: Axes, idle: Doc) -> None:
    for name, fig in idle["rss_mb"].items():
        ax.plot(range(len(fig["samples"])), fig["samples"], label=name)
    ax.axhline(60, linestyle="--", color="grey", label="target: agent <= 60 MB")
    ax.set_xlabel("seconds")
    ax.set_ylabel("RSS, MB")
    ax.set_title("7. idle, no change")
    ax.legend()
    ax.grid(True, alpha=0.3)


def _watched(ax: Axes, watched: Doc) -> None:
    data = {name: fig["samples"] for name, fig in watched["latency_ms"].items()}
    _boxes(ax, data, "/status and /metrics: small vs large lease file")
