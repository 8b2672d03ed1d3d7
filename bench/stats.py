"""Numbers from samples: percentiles, summaries and ratios, as the report prints them."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the closest ranks; nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float]) -> dict[str, Any]:
    """n, p50, p95, p99, min, max, mean (same unit as the samples) and the samples."""
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "min": min(values, default=math.nan),
        "max": max(values, default=math.nan),
        "mean": statistics.fmean(values) if values else math.nan,
        "samples": list(values),
    }


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Median of round-by-round ratios: each round's two figures saw the same load."""
    ratios = [ratio(a, b) for a, b in zip(numerators, denominators, strict=True)]
    return statistics.median(ratios) if ratios else math.nan


def comparison(subject: Sequence[float], baseline: Sequence[float]) -> dict[str, float]:
    """How many times the baseline the subject takes: p50s, p95s, and the paired median
    when the two are rounds of one interleaved run (same length)."""
    ratios = {
        "p50": ratio(percentile(subject, 50), percentile(baseline, 50)),
        "p95": ratio(percentile(subject, 95), percentile(baseline, 95)),
    }
    if len(subject) == len(baseline):
        ratios["paired"] = paired_ratio(subject, baseline)
    return ratios


class Stopwatch:
    """Milliseconds of named steps, timed one after the other."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.steps[name] = self.steps.get(name, 0.0) + ms_since(start)

    @property
    def total(self) -> float:
        return sum(self.steps.values())


def ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000
