"""ISC dhcpd behind the seam: agent.servers.base.Server, from the [dhcpd] section."""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from agent import tree
from agent.config import Dhcpd
from agent.errors import DhcpGitopsError, OmapiError, PolicyError, Problem
from agent.servers.applied import Applied
from agent.servers.base import Files, PairState
from agent.servers.dhcpd import conf, dangers, failover, omapi, pair, policy, sandbox
from agent.servers.dhcpd.restart import Restarter, restarter_for

log = logging.getLogger(__name__)


class Language:
    """dhcpd.conf as the review commands and the engine see it: pure but for `dhcpd -t`."""

    name = "dhcpd"

    def __init__(
        self, dhcpd: Dhcpd, read_only: Sequence[Path] = (), allow: Sequence[str] = ()
    ) -> None:
        self.dhcpd = dhcpd
        self.read_only = tuple(read_only)  # [policy] read_only: shown to dhcpd -t
        self.allow = tuple(allow)  # [policy] allow: statements beyond DHCP consented to

    @property
    def main(self) -> str:
        return self.dhcpd.config

    def validate(self, stage: Path, target: Path, sources: Mapping[str, str]) -> None:
        """The node's policy first (policy.py), then the include check and dhcpd -t."""
        files = {rel: path.read_bytes() for rel, path in tree.files(stage)}
        refused = policy.refusals(files, self.main, str(target), self.allow)
        if refused:
            located = [_sourced(p, target, sources) for p in refused]
            raise PolicyError(
                f"refused by this node's policy: {len(located)} statement(s) reach beyond DHCP",
                located,
            )
        sandbox.validate(stage, target, self.dhcpd, sources, self.read_only)

    def pair_problems(
        self, rendered: Mapping[str, Files], target: str, warnings: bool = True
    ) -> list[Problem]:
        # Without warnings the hosts are not read: a fixed address in a range only warns.
        parsed = {role: conf.parse(files, self.main, target, hosts=warnings)
                  for role, files in rendered.items()}  # fmt: skip
        # validate() already refused includes that leave the target, with the same rule.
        parsed = {role: replace(c, includes_outside=()) for role, c in parsed.items()}
        problems = [p for role, c in parsed.items() for p in pair.check_one(c, role)]
        if "primary" in parsed and "secondary" in parsed:
            problems += pair.check(parsed["primary"], parsed["secondary"])
        return problems

    def dangers(self, before: Files, after: Files, target: str) -> list[str]:
        old, new = (conf.parse(files, self.main, target) for files in (before, after))
        return dangers.dangers(old, new)


class Server(Applied, Language):
    """One dhcpd, applied to by `restart`: supervised, by a command, or not at all."""

    restarter: Restarter  # dhcpd's: it also adopts and releases a dhcpd across agents

    def __init__(
        self,
        dhcpd: Dhcpd,
        target: Path,
        state_dir: Path,
        restarter: Restarter | None = None,
        read_only: Sequence[Path] = (),
        allow: Sequence[str] = (),
    ) -> None:
        super().__init__(dhcpd, read_only, allow)
        self.target = target
        self.restarter = restarter or restarter_for(dhcpd, target, state_dir)

    @property
    def pair_timeout(self) -> float:
        return self.dhcpd.failover_timeout

    def accept(self) -> None:
        self.restarter.accept()

    def adopt(self) -> bool:
        return self.restarter.adopt()

    def release(self) -> None:
        self.restarter.release()

    def pair_states(self) -> list[PairState]:
        return failover.read(self.dhcpd.lease_file)

    def pair_normal(self) -> bool | None:
        """Failover over OMAPI, for every peer the live config declares."""
        files = {rel: path.read_bytes() for rel, path in tree.files(self.target)}
        live = conf.parse(files, self.main, str(self.target), hosts=False)
        peers = [f.name for f in live.failovers]
        if not peers:
            return None
        d = self.dhcpd
        try:
            key = self._omapi_key()
            states = [omapi.from_omapi(name, d.omapi_port, key=key, omshell=d.omshell)
                      for name in peers]  # fmt: skip
        except DhcpGitopsError as err:
            log.info("failover state not readable yet: %s", err.message)
            return False
        return failover.all_normal(states)

    def _omapi_key(self) -> omapi.OmapiKey | None:
        """The live key [dhcpd] omapi_key_file names (a server-only file), read each time:
        the server's own, which a deploy never replaces."""
        rel = self.dhcpd.omapi_key_file
        if rel is None:
            return None
        path = self.target / rel
        try:
            data = path.read_bytes()
        except OSError as err:
            raise OmapiError(f"{path} ([dhcpd] omapi_key_file): {err.strerror}") from err
        return omapi.key_of(data, str(path))


def _sourced(problem: Problem, target: Path, sources: Mapping[str, str]) -> Problem:
    """The Problem with the repo file its live file was rendered from."""
    rel = posixpath.relpath(problem.file, str(target))
    return replace(problem, source=sources.get(rel))
