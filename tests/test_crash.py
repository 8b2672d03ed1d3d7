"""Crash safety: the real agent SIGKILLed at every fault point, restarted, checked.

tests/crashlab.py runs the trials (what each checks is written there); here a
few per point, CRASH_TRIALS of them (default 2). The campaign with many more
and a table: scripts/crash-campaign.sh [TRIALS_PER_POINT].
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import fault, tree
from agent.engine.state import Attempt, Store, now
from lab.agent import EXE
from lab.netns import NetLab, make_lan
from lab.repo import ConfigRepo
from tests.conftest import NodeFactory, require_netns
from tests.crashlab import POINTS, CrashLab, Point, table

TRIALS = int(os.environ.get("CRASH_TRIALS", "2"))
SEED = int(os.environ.get("CRASH_SEED", str(random.randrange(1 << 32))))  # noqa: S311


def run_with_fault(code: str, spec: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != fault.ENV}
    if spec is not None:
        env[fault.ENV] = spec
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30,
        check=False,
    )  # fmt: skip


COUNT_TO_FIVE = """
from agent import fault
for i in range(5):
    print(i, flush=True)
    fault.point("after-fetch")
"""


def test_an_armed_point_kills_its_process_by_sigkill_on_the_chosen_pass() -> None:
    done = run_with_fault(COUNT_TO_FIVE, "after-fetch:3")
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["0", "1", "2"]
    assert "fault point after-fetch: SIGKILL" in done.stderr


def test_a_point_not_armed_does_nothing() -> None:
    for spec in (None, "after-record", "after-fetch:9"):
        done = run_with_fault(COUNT_TO_FIVE, spec)
        assert done.returncode == 0 and done.stdout.split() == ["0", "1", "2", "3", "4"]


def test_a_misspelt_point_is_refused_at_start() -> None:
    done = run_with_fault(COUNT_TO_FIVE, "after-fetsh")
    assert done.returncode == 1
    assert "no fault point 'after-fetsh'" in done.stderr


def test_the_campaign_covers_every_fault_point() -> None:
    assert tuple(p.name for p in POINTS) == fault.POINTS


@pytest.fixture(scope="module")
def crashlab(tmp_path_factory: pytest.TempPathFactory, dhcpd_binary: str) -> Iterator[CrashLab]:
    """One server for every point's trials, each trial starting where the last ended."""
    require_netns()
    root = tmp_path_factory.mktemp("crash")
    netlab = NetLab()
    lab: CrashLab | None = None
    try:
        lab = CrashLab(root, make_lan(netlab, root, dhcpd_binary), SEED)
        yield lab
    finally:
        if lab is not None:
            lab.close()
        left = netlab.teardown()
        assert not left, f"left running in the namespaces: {left}"


@pytest.mark.parametrize("point", POINTS, ids=lambda p: p.name)
def test_an_agent_killed_at_a_fault_point_recovers(crashlab: CrashLab, point: Point) -> None:
    results = [crashlab.trial(point) for _ in range(TRIALS)]
    print(f"\nseed {SEED}\n{table(results)}")
    failures = [f"{r.spec}: {f}" for r in results for f in r.failures]
    assert not failures, f"CRASH_SEED={SEED}\n" + "\n".join(failures)


def test_a_first_deploy_killed_after_the_exchange_puts_back_the_tree_from_before(
    repo: ConfigRepo, make_node: NodeFactory
) -> None:
    """No record yet to compare with: the journal alone says the live tree is unrecorded,
    so the hand-made tree the agent found comes back, and becomes the rollback tree."""
    node = make_node()
    target = node.config.deploy.target
    tree.write(target, {"dhcpd.conf": b"# by hand, before dhcp-gitops\n"})
    before = tree.digest(target)
    config = str(node.config.file)

    killed = run_sync(config, "after-exchange")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (target / "hosts.conf").is_file() and not node.store.state_file.exists()

    done = run_sync(config, None)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "putting back the tree from before" in done.stderr
    assert tree.digest(node.workspace.previous) == before
    deployed = node.store.load().deployed
    assert deployed is not None and deployed.digest == tree.digest(target)
    assert not node.workspace.stage.exists() and not node.workspace.journal.exists()


def test_a_history_line_torn_by_a_power_cut_is_skipped(tmp_path: Path) -> None:
    """history.jsonl is appended after state.json; a cut mid-append may leave half a line."""
    store = Store(tmp_path)
    store.append_history(Attempt(started_at=now(), result="deployed"), "dhcp1")
    with store.history_file.open("ab") as f:
        f.write(b'{"node": "dhcp1", "started_at": "2026-')
    assert [a.result for a in store.history()] == ["deployed"]


def run_sync(config: str, spec: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != fault.ENV}
    if spec is not None:
        env[fault.ENV] = spec
    return subprocess.run(
        [EXE, "sync", "--config", config], env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
