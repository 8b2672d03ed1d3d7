"""The DHCP servers behind the seam (agent.servers.base): one subpackage per server software.

    servers/
    ├── base.py        Server and Language: what the engine, the daemon and the
    │                  review commands may ask of a server; PairState, Health
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
from agent.servers.base import Language, Server

BACKENDS = ("dhcpd", "kea")  # the values of [node] server, each a subpackage here


def for_config(config: AgentConfig) -> Server:
    """The server this node runs, as its agent.toml describes it."""
    deploy = config.deploy
    if config.node.server == "kea":
        return kea.Server(config.kea, deploy.target, deploy.state_dir)
    read_only = config.policy.read_only
    return dhcpd.Server(config.dhcpd, deploy.target, deploy.state_dir, read_only=read_only)


def language(
    kind: str, main: str | None = None, binary: str | None = None, read_only: Sequence[Path] = ()
) -> Language:
    """A server's config language for the review commands, which run without agent.toml:
    main is the main config file (relative to the target), binary the validator,
    read_only the files beyond the target it may read (as [policy] read_only)."""
    if kind not in BACKENDS:
        raise UsageError(f"unknown server {kind!r}: one of {', '.join(BACKENDS)}")
    if kind == "kea":
        k = Kea()
        return kea.Language(Kea(config=main or k.config, binary=binary or k.binary))
    defaults = Dhcpd()
    chosen = Dhcpd(config=main or defaults.config, binary=binary or defaults.binary)
    return dhcpd.Language(chosen, read_only)
