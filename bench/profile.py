"""Where one reconcile's time goes: pyinstrument around reconcile() in this process.

A node of its own (restart "none": the restart is dhcpd's time, measured
elsewhere) deploys the repo's head, then one more change is profiled. The
agent service runs the same reconcile() in its worker thread.
"""

from __future__ import annotations

from typing import Any

from pyinstrument import Profiler

from agent import config
from agent.engine.reconcile import Node, reconcile
from bench.lab import DHCPD, BenchError, Lab
from bench.repo import BenchRepo
from lab.toml import toml_text

INTERVAL = 0.001  # seconds between samples


def profile_reconcile(lab: Lab, repo: BenchRepo) -> dict[str, Any]:
    node = _node(lab, repo)
    _deployed(node)
    repo.change()
    profiler = Profiler(interval=INTERVAL)
    profiler.start()
    attempt = _deployed(node)
    profiler.stop()
    return {
        "timings_ms": {step: s * 1000 for step, s in attempt.timings.items()},
        "text": profiler.output_text(unicode=False, color=False, show_all=False),
    }


def _node(lab: Lab, repo: BenchRepo) -> Node:
    home = lab.path("profile")
    tables = {
        "node": {"name": "profile", "role": "standalone"},
        "source": {"url": repo.url, "branch": "main"},
        "deploy": {"target": str(home / "etc" / "dhcp"), "state_dir": str(home / "state")},
        "dhcpd": {"restart": "none", "binary": DHCPD, "lease_file": str(home / "leases")},
    }
    (home / "etc").mkdir()
    path = home / "agent.toml"
    path.write_text(toml_text(tables))
    return Node.from_config(config.load(path))


def _deployed(node: Node) -> Any:
    attempt = reconcile(node)
    if attempt.result != "deployed":
        raise BenchError(f"profile: {attempt.result}: {attempt.message}")
    return attempt
