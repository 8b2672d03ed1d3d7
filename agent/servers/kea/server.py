"""Kea DHCPv4 behind the seam: agent.servers.base.Server, from the [kea] section."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent import tree
from agent.config import Kea
from agent.errors import DhcpGitopsError, Problem
from agent.servers.applied import Applied
from agent.servers.base import Files, PairState
from agent.servers.kea import conf, control, dangers, pair, sandbox
from agent.servers.kea.restart import Restarter, restarter_for

log = logging.getLogger(__name__)

# HA states in which both servers serve as the mode intends. partner-down is not:
# one server serves alone. (Kea ARM, "Server States in High Availability")
NORMAL_STATES = ("load-balancing", "hot-standby", "passive-backup")


class Language:
    """kea-dhcp4.conf as the review commands and the engine see it: pure but for
    `kea-dhcp4 -t`."""

    name = "kea"

    def __init__(self, kea: Kea) -> None:
        self.kea = kea

    @property
    def main(self) -> str:
        return self.kea.config

    def validate(self, stage: Path, target: Path, sources: Mapping[str, str]) -> None:
        sandbox.validate(stage, target, self.kea, sources)

    def pair_problems(
        self, rendered: Mapping[str, Files], target: str, warnings: bool = True
    ) -> list[Problem]:
        parsed = {role: conf.parse(files, self.main, target) for role, files in rendered.items()}
        # A side that does not parse is named by validate(); nothing to compare it with.
        ready = {role: c for role, c in parsed.items() if c is not None}
        problems = [p for role, c in ready.items() for p in pair.check_one(c, role)]
        if "primary" in ready and "secondary" in ready:
            problems += pair.check(ready["primary"], ready["secondary"])
        return problems

    def dangers(self, before: Files, after: Files, target: str) -> list[str]:
        old, new = (conf.parse(files, self.main, target) for files in (before, after))
        if old is None or new is None:
            return []
        return dangers.dangers(old, new)


class Server(Applied, Language):
    """One kea-dhcp4, applied to by reload, supervise, command or not at all."""

    def __init__(
        self, kea: Kea, target: Path, state_dir: Path, restarter: Restarter | None = None
    ) -> None:
        super().__init__(kea)
        self.target = target
        self.restarter = restarter or restarter_for(kea, target, state_dir)

    @property
    def pair_timeout(self) -> float:
        return self.kea.ha_timeout

    def accept(self) -> None:
        """Kea keeps its own lease file across a reload; nothing kept to forget."""

    def adopt(self) -> bool:
        """Not built for Kea: an agent restart restarts a supervised kea-dhcp4."""
        return False

    def release(self) -> None:
        self.stop()  # the next agent would not adopt it, and Kea has no stray check

    def pair_states(self) -> list[PairState]:
        """HA as status-get reports it, each relationship named by its partner in the live
        config; empty when Kea does not answer (status stays cheap: one round trip)."""
        try:
            answer = control.command(self.kea.control_socket, "status-get", timeout=1.0)
        except DhcpGitopsError:
            return []
        return ha_states(answer, self._partners())

    def _partners(self) -> list[str]:
        files = {rel: path.read_bytes() for rel, path in tree.files(self.target)}
        parsed = conf.parse(files, self.main, str(self.target))
        relationships = parsed.relationships if parsed else ()
        return [next((p.name for p in r.peers if p.name != r.this_server), "") for r in
                relationships]  # fmt: skip

    def pair_normal(self) -> bool | None:
        """Every HA relationship of the live config in a state of NORMAL_STATES, asked
        with ha-heartbeat (this server's state); None without HA."""
        if not self._partners():
            return None
        try:
            answer = control.command(self.kea.control_socket, "ha-heartbeat", timeout=2.0)
        except DhcpGitopsError as err:
            log.info("HA state not readable yet: %s", err.message)
            return False
        return isinstance(answer, dict) and answer.get("state") in NORMAL_STATES


def ha_states(status: Any, partners: list[str]) -> list[PairState]:
    """status-get's `high-availability` list: each relationship's local state and the
    partner's as last heard (it lags by up to one heartbeat)."""
    found: list[PairState] = []
    for i, ha in enumerate(status.get("high-availability", []) if isinstance(status, dict) else []):
        servers = ha.get("ha-servers", {}) if isinstance(ha, dict) else {}
        local, remote = servers.get("local", {}), servers.get("remote", {})
        found.append(PairState(
            peer=partners[i] if i < len(partners) else str(ha.get("ha-mode", "")),
            mine=str(local.get("state", "unknown")),
            partner=str(remote.get("last-state") or "unknown"),
            mine_since=None, partner_since=None,
        ))  # fmt: skip
    return found
