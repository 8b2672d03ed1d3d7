"""The rules a Kea HA pair keeps that `kea-dhcp4 -t` cannot see.

`kea-dhcp4 -t` does not load hook libraries, so it reads the HA parameters
not at all (measured, Kea 2.2: an unknown mode, a role "secondarx" and a
this-server-name that names no peer all pass). Here each side alone is
checked as the HA hook would at start, then the two sides against each
other: the same relationships, peers, subnets and pools, and each side its
own server. A Problem's file is "<role>:<path>", its line that of the JSON key.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

from agent.errors import Problem
from agent.servers.kea.conf import HA_HOOK, LEASE_CMDS_HOOK, KeaConf, Relationship, Subnet
from agent.servers.kea.jsonc import JsonPath

# The roles each HA mode takes (Kea ARM, "High Availability"): exactly one primary,
# and at most one secondary or standby; backups for any mode.
MODES = {
    "load-balancing": ("primary", "secondary"),
    "hot-standby": ("primary", "standby"),
    "passive-backup": ("primary",),
}
# Our [node] role -> the Kea roles its own peer entry may have.
OWN_ROLES = {"primary": ("primary",), "secondary": ("secondary", "standby", "backup")}


def problem(conf: KeaConf, role: str, path: JsonPath, message: str) -> Problem:
    file, line = conf.where(path)
    return Problem(f"{role}:{file}", line, message)


def check_one(conf: KeaConf, role: str) -> list[Problem]:
    """One side as the HA hook would take it at start."""
    if role not in OWN_ROLES:
        return []
    problems = list(_hooks(conf, role))
    for rel in conf.relationships:
        problems += _relationship(conf, role, rel)
    return problems


def _hooks(conf: KeaConf, role: str) -> Iterator[Problem]:
    for hook, why in ((HA_HOOK, "HA"), (LEASE_CMDS_HOOK, "the HA hook's lease updates")):
        if hook not in conf.hooks:
            yield problem(
                conf,
                role,
                ("Dhcp4", "hooks-libraries"),
                f"{hook} is not loaded: a pair needs it for {why}",
            )
    if HA_HOOK in conf.hooks and not conf.relationships:
        yield problem(
            conf,
            role,
            ("Dhcp4", "hooks-libraries"),
            f"{HA_HOOK} is loaded without a high-availability relationship",
        )


def _relationship(conf: KeaConf, role: str, rel: Relationship) -> Iterator[Problem]:
    def say(path: JsonPath, message: str) -> Problem:
        return problem(conf, role, path, message)

    roles = MODES.get(rel.mode)
    if roles is None:
        yield say((*rel.path, "mode"), f"HA mode {rel.mode!r}: one of {', '.join(MODES)}")
        return
    for peer in rel.peers:
        if peer.role not in (*roles, "backup"):
            yield say(
                (*peer.path, "role"),
                f"peer {peer.name!r} has role {peer.role!r}, "
                f"which {rel.mode} does not take: {', '.join((*roles, 'backup'))}",
            )
        if urlsplit(peer.url).scheme not in ("http", "https") or not urlsplit(peer.url).port:
            yield say(
                (*peer.path, "url"),
                f"peer {peer.name!r} url {peer.url!r}: give http://ADDRESS:PORT/",
            )
    yield from _counts(conf, role, rel, roles)
    mine = rel.peer(rel.this_server)
    if mine is None:
        yield say(
            (*rel.path, "this-server-name"),
            f"this-server-name {rel.this_server!r} names no peer of the relationship",
        )
    elif mine.role not in OWN_ROLES[role]:
        yield say(
            (*mine.path, "role"),
            f"this server ({rel.this_server!r}) is the {role} "
            f"here, but its peer entry has role {mine.role!r}",
        )


def _counts(
    conf: KeaConf, role: str, rel: Relationship, roles: tuple[str, ...]
) -> Iterator[Problem]:
    names = [p.name for p in rel.peers]
    for name in sorted({n for n in names if names.count(n) > 1}):
        yield problem(conf, role, (*rel.path, "peers"), f"peer name {name!r} is given twice")
    urls = [p.url for p in rel.peers]
    for url in sorted({u for u in urls if urls.count(u) > 1}):
        yield problem(conf, role, (*rel.path, "peers"), f"two peers share the url {url!r}")
    for kea_role in roles:
        count = sum(p.role == kea_role for p in rel.peers)
        if count != 1:
            yield problem(
                conf,
                role,
                (*rel.path, "peers"),
                f"{rel.mode} needs exactly one {kea_role} peer, found {count}",
            )


# --- the two sides against each other -------------------------------------------


def check(primary: KeaConf, secondary: KeaConf) -> list[Problem]:
    """The secondary against the primary: findings are placed on the secondary's side,
    naming what the primary says."""
    problems: list[Problem] = []
    if len(primary.relationships) != len(secondary.relationships):
        problems.append(
            problem(
                secondary,
                "secondary",
                ("Dhcp4", "hooks-libraries"),
                f"{len(secondary.relationships)} HA relationship(s) here, "
                f"{len(primary.relationships)} on the primary",
            )
        )
    for mine, theirs in zip(secondary.relationships, primary.relationships, strict=False):
        problems += _same_relationship(secondary, mine, theirs)
    problems += _same_subnets(primary, secondary)
    return problems


def _same_relationship(conf: KeaConf, mine: Relationship, theirs: Relationship) -> list[Problem]:
    def say(path: JsonPath, message: str) -> Problem:
        return problem(conf, "secondary", path, message)

    found: list[Problem] = []
    if mine.mode != theirs.mode:
        found.append(
            say((*mine.path, "mode"), f"HA mode {mine.mode!r}, the primary's is {theirs.mode!r}")
        )
    if mine.this_server == theirs.this_server:
        found.append(
            say(
                (*mine.path, "this-server-name"),
                f"this-server-name {mine.this_server!r} is the primary's too: each names itself",
            )
        )
    ours = {p.name: p for p in mine.peers}
    primary_peers = {p.name: p for p in theirs.peers}
    for name, peer in ours.items():
        other = primary_peers.get(name)
        if other is None:
            found.append(say(peer.path, f"peer {name!r} is not in the primary's peers"))
        elif (peer.url, peer.role) != (other.url, other.role):
            found.append(
                say(
                    peer.path,
                    f"peer {name!r} is {peer.role} at {peer.url}, on the "
                    f"primary {other.role} at {other.url}",
                )
            )
    for name in primary_peers.keys() - ours.keys():
        found.append(say((*mine.path, "peers"), f"the primary's peer {name!r} is missing here"))
    return found


def _same_subnets(primary: KeaConf, secondary: KeaConf) -> list[Problem]:
    """Both serve the same subnets with the same ids and pools: leases are filed by
    subnet id, and the HA hook's lease updates name it."""
    theirs = {s.prefix: s for s in primary.subnets}
    found: list[Problem] = []
    for subnet in secondary.subnets:
        other = theirs.pop(subnet.prefix, None)
        found += _same_subnet(secondary, subnet, other)
    for other in theirs.values():
        found.append(
            problem(
                secondary,
                "secondary",
                ("Dhcp4", "subnet4"),
                f"subnet {other.prefix} (id {other.id}) of the primary is missing here",
            )
        )
    return found


def _same_subnet(conf: KeaConf, subnet: Subnet, other: Subnet | None) -> list[Problem]:
    def say(key: str, message: str) -> Problem:
        return problem(conf, "secondary", (*subnet.path, key), message)

    if other is None:
        return [say("subnet", f"subnet {subnet.prefix} is not on the primary")]
    found: list[Problem] = []
    if subnet.id != other.id:
        found.append(
            say(
                "id",
                f"subnet {subnet.prefix} has id {subnet.id}, on the primary "
                f"{other.id}: leases are filed by subnet id",
            )
        )
    if sorted(subnet.pools) != sorted(other.pools):
        found.append(
            say(
                "pools",
                f"subnet {subnet.prefix} pools {', '.join(subnet.pools) or 'none'}; on "
                f"the primary {', '.join(other.pools) or 'none'}",
            )
        )
    return found
