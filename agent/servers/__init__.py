"""The DHCP servers behind the seam (agent.servers.base): one subpackage per server software.

    servers/
    ├── base.py        Server, Language and Importer: what the engine, the daemon
    │                  and the review commands may ask of a server; PairState, Health
    ├── sandbox.py     the bubblewrap sandbox every validator runs in
    ├── dhcpd/         ISC dhcpd (config language, `dhcpd -t` in the sandbox,
    │                  failover pair rules, restarts, leases, OMAPI)
    └── kea/           Kea DHCPv4 (JSON with comments and includes, `kea-dhcp4 -t`
                       in the sandbox, HA pair rules, control-socket reloads)

A backend is one subpackage with a `Server` and a `Language` class, named by
one value of `[node] server` (agent.config.ServerKind); nothing else changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agent.config import AgentConfig, Dhcpd, Kea
from agent.errors import UsageError
from agent.servers import dhcpd, kea
from agent.servers.base import Importer, Language, Server

BACKENDS = ("dhcpd", "kea")  # the values of [node] server, each a subpackage here


def for_config(config: AgentConfig) -> Server:
    """The server this node runs, as its agent.toml describes it."""
    deploy = config.deploy
    if config.node.server == "kea":
        return kea.Server(config.kea, deploy.target, deploy.state_dir)
    policy = config.policy
    return dhcpd.Server(config.dhcpd, deploy.target, deploy.state_dir,
                        read_only=policy.read_only, allow=policy.allow)  # fmt: skip


def language(
    kind: str,
    main: str | None = None,
    binary: str | None = None,
    read_only: Sequence[Path] = (),
    allow: Sequence[str] = (),
) -> Language:
    """A server's config language for the review commands, which run without agent.toml:
    main is the main config file (relative to the target), binary the validator,
    read_only the files beyond the target it may read and allow the statements beyond
    DHCP the servers consent to (as their [policy] read_only and allow)."""
    if kind not in BACKENDS:
        raise UsageError(f"unknown server {kind!r}: one of {', '.join(BACKENDS)}")
    if kind == "kea":
        k = Kea()
        return kea.Language(Kea(config=main or k.config, binary=binary or k.binary))
    defaults = Dhcpd()
    chosen = Dhcpd(config=main or defaults.config, binary=binary or defaults.binary)
    return dhcpd.Language(chosen, read_only, allow)


def importer(
    kind: str, target: Path, main: str | None = None, binary: str | None = None
) -> Importer:
    """A server's side of `dhcp-gitops import`, for copies of a folder that goes live at
    target: main is the main config file (relative to it), binary the validator."""
    if kind != "dhcpd":
        raise UsageError(f"import adopts ISC dhcpd failover pairs, not {kind!r} servers")
    defaults = Dhcpd()
    chosen = Dhcpd(config=main or defaults.config, binary=binary or defaults.binary)
    return dhcpd.Importer(chosen, target)
