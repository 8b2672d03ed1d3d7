"""The supervised dhcpd's working directory is /, as Debian's service starts dhcpd and as
validation runs dhcpd -t: a relative include would mean one file under each (and the
include check refuses it). A real dhcpd, in a network namespace of lab/netns.py."""

from __future__ import annotations

from pathlib import Path

from agent.engine.reconcile import Node, reconcile
from lab.netns import Lan
from tests.test_supervise import assert_serving_in, node  # noqa: F401 (node: the fixture)


def test_the_supervised_dhcpd_runs_from_root(node: Node, lan: Lan) -> None:  # noqa: F811
    attempt = reconcile(node)
    assert attempt.result == "deployed", attempt.message
    pid = assert_serving_in(node, lan)
    assert str(Path(f"/proc/{pid}/cwd").readlink()) == "/"
