"""The benchmark harness end to end on tiny inputs: every scenario's code path, once.

`python -m bench --smoke` runs what `scripts/bench.sh` runs (real dhcpd in network
namespaces, the agent, the rsync pipeline, ansible-pull, the failover pair, the
webhook storm, idle, the lease file) in well under a minute, into tmp_path. No
figure is asserted: timings on a shared machine are no test's business; that the
harness runs, cleans up and writes what docs/benchmarks.* hold is.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_netns

ROOT = Path(__file__).resolve().parent.parent
SMOKE_TIMEOUT = 240
TOOLS = {  # what the pipelines compared with need: scripts/setup.sh --bench installs them
    "rsync": "rsync",
    "inotifywait": "inotify-tools",
    "dhclient": "isc-dhcp-client",
    "perfdhcp": "kea-admin",
}
SCENARIOS = {"push", "scale", "pair", "storm", "idle", "watched"}


def require_bench_tools() -> None:
    missing = [pkg for tool, pkg in TOOLS.items() if shutil.which(tool, path=_path()) is None]
    if not Path(sys.executable).with_name("ansible-pull").exists():
        missing.append("ansible-core (the bench extra)")
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: scripts/setup.sh --bench installs them")


def _path() -> str:
    return "/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_netns()
    require_bench_tools()
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def test_every_scenario_writes_its_figures(smoke: Path) -> None:
    doc = json.loads((smoke / "benchmarks.json").read_text())
    assert set(doc) == {"meta", "targets", "scenarios"}
    assert set(doc["scenarios"]) == SCENARIOS
    push = doc["scenarios"]["push"]
    assert {"floor", "agent", "rsync", "ansible-nofacts"} <= set(push["pipelines"])
    for figures in push["pipelines"].values():
        assert figures["total_ms"]["n"] == 1 and len(figures["total_ms"]["samples"]) == 1
    assert {"fetch", "dhcpd -t", "exchange", "restart"} <= set(
        push["pipelines"]["floor"]["steps_ms"]
    )
    assert {"agent/floor", "agent/rsync", "ansible-nofacts/agent"} <= set(push["ratios"])
    assert "agent/(dhcpd -t + restart)" in doc["scenarios"]["scale"]["sizes"]["100"]["ratios"]
    assert {"both live", "failover normal"} <= set(doc["scenarios"]["pair"]["ratios"])
    storm = doc["scenarios"]["storm"]
    assert storm["newest_live"] is True and storm["response_ms"]["n"] == 40
    idle = doc["scenarios"]["idle"]
    assert idle["fetched"] is False and idle["git_commands"].get("ls-remote", 0) >= 1
    assert {"/status", "/metrics"} == set(doc["scenarios"]["watched"]["ratios"])
    assert {t["target"] for t in doc["targets"]} >= {"push-to-live <= 1.5x the floor",
                                                      "storm <= 3 reconciles"}  # fmt: skip


def test_the_report_has_every_section_and_the_plot(smoke: Path) -> None:
    text = (smoke / "benchmarks.md").read_text()
    headings = ["## Targets", "## 1-3. Push to live", "## 4. Scale", "## 5. The failover pair",
                "## 6. Webhook storm", "## 7. Idle", "## The cost of being watched"]  # fmt: skip
    for heading in headings:
        assert heading in text
    assert "![latency distributions](benchmarks.svg)" in text
    assert "<svg" in (smoke / "benchmarks.svg").read_text()
