"""Plan's dangers for Kea: changes that pass every check but hurt a running HA pair.

before/after are one side's config at two commits; each warning is worded for
the reviewer of a pull request.
"""

from __future__ import annotations

from agent.servers.kea.conf import KeaConf, Relationship, Subnet, pool_range


def dangers(before: KeaConf, after: KeaConf) -> list[str]:
    said = _relationships(before.relationships, after.relationships)
    old = {s.prefix: s for s in before.subnets}
    new = {s.prefix: s for s in after.subnets}
    for prefix in sorted(old.keys() & new.keys()):
        said += _subnet_changes(old[prefix], new[prefix])
    return said + _moved_reservations(before.subnets, after.subnets)


def _relationships(old: tuple[Relationship, ...], new: tuple[Relationship, ...]) -> list[str]:
    said: list[str] = []
    for a, b in zip(old, new, strict=False):
        if a.mode != b.mode:
            said.append(
                f"the HA mode changes from {a.mode} to {b.mode}: both servers start "
                "the relationship over, and the scopes they serve change"
            )
        if {(p.name, p.url, p.role) for p in a.peers} != {(p.name, p.url, p.role) for p in b.peers}:
            said.append(
                "the HA peers change (names, urls or roles): until both servers run "
                "the new list they do not recognise each other and stay out of "
                "load-balancing or hot-standby"
            )
    if len(old) != len(new):
        said.append(f"HA relationships: {len(old)} before, {len(new)} after")
    return said


def _subnet_changes(old: Subnet, new: Subnet) -> list[str]:
    said: list[str] = []
    if old.id != new.id:
        said.append(
            f"subnet {old.prefix} changes id {old.id} to {new.id}: leases are filed by "
            "subnet id, so its clients' leases are orphaned and they get new addresses"
        )
    lost = _addresses(old.pools) - _addresses(new.pools)
    if lost:
        said.append(
            f"subnet {old.prefix}: the pools shrink by {len(lost)} address(es); "
            "clients holding them are moved when they renew"
        )
    return said


def _addresses(pools: tuple[str, ...]) -> set[int]:
    """Every address of the pools, as integers (pools of a /16 are 65,536: fine)."""
    found: set[int] = set()
    for pool in pools:
        span = pool_range(pool)
        if span is not None:
            found.update(range(int(span[0]), int(span[1]) + 1))
    return found


def _moved_reservations(old: tuple[Subnet, ...], new: tuple[Subnet, ...]) -> list[str]:
    before = {r: s.prefix for s in old for r in s.reservations}
    after = {r: s.prefix for s in new for r in s.reservations}
    moved = sorted(r for r in before.keys() & after.keys() if before[r] != after[r])
    return [
        f"the reservation for {r} moves from subnet {before[r]} to {after[r]}: the client "
        "keeps its old lease until it expires or is released"
        for r in moved
    ]
