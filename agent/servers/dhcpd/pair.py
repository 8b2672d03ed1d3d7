"""The checks `dhcpd -t` cannot make: it reads one server's config, not the pair's.

Pure: parsed configs (agent.servers.dhcpd.conf) in, Problems out.

Conventions of the Problems made here:
- file is "<role>:<path relative to the target>", e.g. "secondary:dhcpd.failover",
  the role being the side whose rendered file holds the line; split_file()
  takes it apart to find the repo source in that role's Rendered.sources.
- A message that starts with WARNING ("warning: ") is advice, not a refusal.

check_one() holds the rules about one side, check() those across the two sides;
a caller runs check_one() on each side and check() on the pair (check() does not
repeat check_one()'s findings). dangers() compares one side at two commits, for `plan`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping, Sequence

from agent.errors import Problem
from agent.servers.base import WARNING
from agent.servers.dhcpd.conf import DhcpConfig, Failover, OutsideInclude, Pool, Where
from agent.servers.dhcpd.workdir import relative_refusal

DEFAULT_PORT = 647  # dhcpd.conf(5): port and peer port default to the IANA failover port
ROLES = ("primary", "secondary")

IPv4 = ipaddress.IPv4Address


def check_one(config: DhcpConfig, role: str) -> list[Problem]:
    """Rules about one side: `role` is "primary", "secondary" or "standalone"."""
    problems = _outside_includes(config, role)
    for failover in config.failovers:
        problems += _failover_alone(failover, role)
    problems += _pool_peers(config, role)
    problems += _fixed_in_ranges(config, role)
    return problems


def check(primary: DhcpConfig, secondary: DhcpConfig) -> list[Problem]:
    """Rules across the pair: same peer names, mirrored addresses and ports, same pools."""
    problems = _peer_names(primary, secondary)
    for mine, theirs in _same_names(primary, secondary):
        problems += _mirrored(mine, theirs)
    problems += _pools(primary, secondary)
    return problems


def _problem(role: str, where: Where, message: str) -> Problem:
    return Problem(f"{role}:{where.file}", where.line or None, message)


# --- one side ---------------------------------------------------------------


def _outside_includes(config: DhcpConfig, role: str) -> list[Problem]:
    """dhcpd echoes the lines of a file it cannot parse: /etc/shadow would leak.
    A relative include is outside too, as dhcpd resolves it (against /)."""
    return [_problem(role, inc, _outside_said(inc)) for inc in config.includes_outside]


def _outside_said(inc: OutsideInclude) -> str:
    return relative_refusal(inc.path, inc.target) or (
        f'include "{inc.path}" is outside the config folder: refused (dhcpd would echo '
        "its lines into error reports); include only files under the config folder"
    )


def _failover_alone(f: Failover, role: str) -> list[Problem]:
    said = [
        *_role_said(f, role),
        *_address_said(f),
        *_load_balance_said(f),
    ]
    if role in ROLES:
        said += _mclt_split_for_role(f, role)
    return [_problem(role, f.where, message) for message in said]


def _role_said(f: Failover, role: str) -> list[str]:
    """The primary config must say "primary;", the secondary "secondary;"."""
    if role not in ROLES or f.role == role:
        return []
    if f.role is None:
        return [
            f'failover peer "{f.name}" says neither primary nor secondary (dhcpd then '
            f'acts as primary): add "{role};" to it on the {role}'
        ]
    return [
        f'the {role}\'s failover peer "{f.name}" says "{f.role};": write "{role};" '
        f"(one server of the pair must be primary, the other secondary)"
    ]


def _address_said(f: Failover) -> list[str]:
    if f.address is None:
        return [
            f'failover peer "{f.name}" has no address: add "address <this server\'s '
            'address>;" (dhcpd.conf(5): it is the failover server identifier)'
        ]
    # Two servers on one host (a lab, a test pair) differ by port: an endpoint is both.
    same_port = port_of(f.port) == port_of(f.peer_port)
    if f.peer_address is not None and _same_address(f.address, f.peer_address) and same_port:
        return [
            f'failover peer "{f.name}" has address and peer address both {f.address} '
            f"port {port_of(f.port)}: the peer address (or port) must be the other server's"
        ]
    return []


def _load_balance_said(f: Failover) -> list[str]:
    if f.split is not None and f.hba is not None:
        return [
            f'failover peer "{f.name}" has both split and hba: keep one of them '
            "(dhcpd.conf(5): never both)"
        ]
    return []


def _mclt_split_for_role(f: Failover, role: str) -> list[str]:
    """mclt and split (or hba) belong on the primary, which must have them. dhcpd
    refuses load balance settings on the secondary, but takes an mclt there (and
    ignores it: the secondary learns mclt from the primary), so that one warns."""
    if role == "primary":
        return _primary_needs(f)
    said = [
        f'the secondary\'s failover peer "{f.name}" has {name} {value}: remove it '
        "(it belongs on the primary only)"
        for name, value in _load_settings(f)
        if value is not None
    ]
    return [WARNING + s if s.split(" has ", 1)[1].startswith("mclt ") else s for s in said]


def _primary_needs(f: Failover) -> list[str]:
    needs = []
    if f.mclt is None:
        needs.append(
            f'the primary\'s failover peer "{f.name}" has no mclt: add one, '
            'e.g. "mclt 1800;" (dhcpd.conf(5): the primary must have it)'
        )
    if f.split is None and f.hba is None:
        needs.append(
            f'the primary\'s failover peer "{f.name}" has neither split nor hba: '
            'add one, e.g. "split 128;"'
        )
    return needs


def _load_settings(f: Failover) -> list[tuple[str, object]]:
    return [("mclt", f.mclt), ("split", f.split), ("hba", f.hba)]


def _pool_peers(config: DhcpConfig, role: str) -> list[Problem]:
    """Every pool's peer is declared, before the pool (dhcpd reads top to bottom)."""
    declared = {f.name: f for f in config.failovers}
    said = [(pool, _pool_peer_said(pool, declared)) for pool in config.pools]
    return [_problem(role, pool.where, message) for pool, message in said if message]


def _pool_peer_said(pool: Pool, declared: Mapping[str, Failover]) -> str | None:
    peer = declared.get(pool.peer) if pool.peer is not None else None
    if pool.peer is None or (peer is not None and peer.seq < pool.seq):
        return None
    if peer is not None:
        return (
            f'the {_pool_name(pool)} uses failover peer "{pool.peer}" before its declaration '
            f"({_at(peer.where)}): include the failover declaration before the pools"
        )
    known = f" or name a declared one ({_names(declared)})" if declared else ""
    return (
        f'the {_pool_name(pool)} names failover peer "{pool.peer}", which is not declared: '
        f'declare it with failover peer "{pool.peer}" {{ ... }}{known}'
    )


def _fixed_in_ranges(config: DhcpConfig, role: str) -> list[Problem]:
    """A fixed address inside a failover range can be leased to another client too."""
    failover_pools = [p for p in config.pools if p.peer is not None]
    return [
        _problem(role, host.where, f"{WARNING}{_fixed_said(host.name, address, pool, low, high)}")
        for host in config.hosts
        for address in host.fixed_addresses
        for pool, (low, high) in _ranges_holding(failover_pools, address)
    ]


def _fixed_said(host: str, address: str, pool: Pool, low: str, high: str) -> str:
    return (
        f"host {host} has fixed-address {address} inside the failover range {low} - {high} "
        f"of the {_pool_name(pool)} ({_at(pool.where)}): move the address out of the range "
        "or shrink the range"
    )


def _ranges_holding(pools: Sequence[Pool], address: str) -> Iterator[tuple[Pool, tuple[str, str]]]:
    ip = ip_of(address)
    if ip is None:
        return  # a host name: resolving it is not for a pure check
    for pool in pools:
        for low, high in pool.ranges:
            lo, hi = ip_of(low), ip_of(high)
            if lo is not None and hi is not None and lo <= ip <= hi:
                yield pool, (low, high)


# --- across the pair ----------------------------------------------------------


def _peer_names(primary: DhcpConfig, secondary: DhcpConfig) -> list[Problem]:
    """A peer renamed on one side is another relationship (and both go to recover-wait)."""
    return _names_missing(primary, secondary, "primary") + _names_missing(
        secondary, primary, "secondary"
    )


def _names_missing(mine: DhcpConfig, theirs: DhcpConfig, me: str) -> list[Problem]:
    their_names = {f.name for f in theirs.failovers}
    declares = f" (it declares {_names(their_names)})" if their_names else ""
    return [
        _problem(me, f.where, (
            f'the {me} declares failover peer "{f.name}" but the {_other(me)} does not'
            f"{declares}: give the peer the same name on both sides"
        ))
        for f in mine.failovers
        if f.name not in their_names
    ]  # fmt: skip


def _same_names(primary: DhcpConfig, secondary: DhcpConfig) -> list[tuple[Failover, Failover]]:
    theirs = {f.name: f for f in secondary.failovers}
    return [(f, theirs[f.name]) for f in primary.failovers if f.name in theirs]


def _mirrored(primary: Failover, secondary: Failover) -> list[Problem]:
    """Each side's peer address and peer port are the other side's address and port."""
    said = [
        ("primary", primary, _peer_address_said(primary, secondary, "primary")),
        ("secondary", secondary, _peer_address_said(secondary, primary, "secondary")),
        ("primary", primary, _peer_port_said(primary, secondary, "primary")),
        ("secondary", secondary, _peer_port_said(secondary, primary, "secondary")),
    ]
    return [_problem(me, f.where, message) for me, f, message in said if message]


def _peer_address_said(mine: Failover, theirs: Failover, me: str) -> str | None:
    said, actual = mine.peer_address, theirs.address
    if said is None or actual is None or _same_address(said, actual):
        return None  # a missing one is check_one's (or dhcpd -t's) to report
    return (
        f"the {me} says peer address {said} but the {_other(me)}'s address is {actual} "
        f"({_at(theirs.where)}): make them the same"
    )


def _peer_port_said(mine: Failover, theirs: Failover, me: str) -> str | None:
    if port_of(mine.peer_port) == port_of(theirs.port):
        return None
    return (
        f"the {me} says peer port {_port_text(mine.peer_port)} but the {_other(me)} listens "
        f"on port {_port_text(theirs.port)} ({_at(theirs.where)}): make them the same"
    )


def _pools(primary: DhcpConfig, secondary: DhcpConfig) -> list[Problem]:
    """Failover pools identical on both sides; no common pool without failover."""
    renamed = _renamed(primary, secondary)
    lone_p, lone_s, _ = _match_pools(primary.pools, secondary.pools, renamed)
    problems = _common_without_failover(primary.pools, secondary.pools)
    return problems + [_pool_differs(*pair) for pair in _pair_up(lone_p, lone_s)]


def _renamed(primary: DhcpConfig, secondary: DhcpConfig) -> dict[str, str]:
    """secondary name -> primary name when each side declares one peer under its own
    name: _peer_names reports the rename once, not again for every pool."""
    if len(primary.failovers) == len(secondary.failovers) == 1:
        return {secondary.failovers[0].name: primary.failovers[0].name}
    return {}


def _match_pools(
    primary: Sequence[Pool], secondary: Sequence[Pool], renamed: Mapping[str, str]
) -> tuple[list[Pool], list[Pool], list[Pool]]:
    """(primary pools without a twin, secondary pools without one, primary pools with one)."""
    left = list(secondary)
    lone, twinned = [], []
    for pool in primary:
        twin = next((s for s in left if _pool_key(pool, {}) == _pool_key(s, renamed)), None)
        if twin is None:
            lone.append(pool)
        else:
            left.remove(twin)
            twinned.append(pool)
    return lone, left, twinned


def _pair_up(
    primary: Sequence[Pool], secondary: Sequence[Pool]
) -> list[tuple[str, Pool, Pool | None]]:
    """Pools without a twin, paired by place (subnet), failover pools first, as
    (side reported, its pool, the other side's pool there or None when it lacks one).
    Two pools without failover are no pair's business."""
    left = sorted(secondary, key=lambda s: s.peer is None)
    pairs: list[tuple[str, Pool, Pool | None]] = []
    for pool in sorted(primary, key=lambda p: p.peer is None):
        other = next((s for s in left if s.subnet == pool.subnet), None)
        if other is not None:
            left.remove(other)
        pairs.append(("primary", pool, other))
    pairs += [("secondary", s, None) for s in left]
    return [(me, a, b) for me, a, b in pairs if a.peer or (b and b.peer)]


def _pool_differs(me: str, pool: Pool, theirs: Pool | None) -> Problem:
    other = _other(me)
    if theirs is None:
        message = (
            f"the {me} has the {_pool_name(pool)} ({_pool_text(pool)}) but the {other} has no "
            f"such pool: add it to the {other} too"
        )
    else:
        message = (
            f"the {me}'s {_pool_name(pool)} has {_pool_text(pool)} but the {other}'s "
            f"({_at(theirs.where)}) has {_pool_text(theirs)}: make the pools identical"
        )
    return _problem(me, pool.where, message)


def _common_without_failover(primary: Sequence[Pool], secondary: Sequence[Pool]) -> list[Problem]:
    """dhcpd.conf(5): "You must not have any common address pools on which you are not
    doing failover": both servers would lease the same addresses (duplicate leases).
    A bare range is such a pool; any overlap counts, not only identical pools."""
    mine = [p for p in primary if p.peer is None]
    theirs = [s for s in secondary if s.peer is None]
    return [
        _unshared(p, s, common)
        for p in mine
        for s in theirs
        if (common := _overlap(_intervals(p), _intervals(s))) is not None
    ]


def _unshared(pool: Pool, theirs: Pool, common: tuple[int, int]) -> Problem:
    both = f"addresses {IPv4(common[0])} - {IPv4(common[1])}"
    if _range_key(pool) == _range_key(theirs) and pool.subnet == theirs.subnet:
        said = f"the {_pool_name(pool)} ({_pool_text(pool)}) is on both servers"
    else:
        said = (
            f"the primary's {_pool_name(pool)} ({_pool_text(pool)}) and the secondary's "
            f"{_pool_name(theirs)} ({_pool_text(theirs)}, {_at(theirs.where)}) share {both}"
        )
    return _problem(
        "primary",
        pool.where,
        f"{said} without a failover peer: both would lease the same addresses (duplicate "
        f"leases); {_remedy(pool, theirs)} on both sides, or give each server addresses of "
        "its own",
    )


def _remedy(*pools: Pool) -> str:
    if any(p.bare for p in pools):
        return "put the range in a pool with the failover peer"
    return "add the failover peer to the pool"


def _intervals(pool: Pool) -> list[tuple[int, int]]:
    """The pool's ranges as integer intervals (ranges of host names skipped)."""
    found = []
    for low, high in pool.ranges:
        lo, hi = ip_of(low), ip_of(high)
        if lo is not None and hi is not None:
            found.append((int(min(lo, hi)), int(max(lo, hi))))
    return found


def _overlap(a: Sequence[tuple[int, int]], b: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
    """The first interval common to both lists, or None."""
    common = [(max(lo, b_lo), min(hi, b_hi)) for lo, hi in a for b_lo, b_hi in b]
    return min((c for c in common if c[0] <= c[1]), default=None)


def _pool_key(pool: Pool, renamed: Mapping[str, str]) -> tuple[object, ...]:
    peer = renamed.get(pool.peer, pool.peer) if pool.peer is not None else None
    return (pool.subnet, peer, _range_key(pool))


def _range_key(pool: Pool) -> list[tuple[str, str]]:
    """Ranges in a comparable form: the order of range statements does not matter."""
    return sorted((address_key(low), address_key(high)) for low, high in pool.ranges)


# --- words ----------------------------------------------------------------------


def _pool_name(pool: Pool) -> str:
    if pool.bare:
        return f"range in {pool.subnet} outside any pool"
    return f"pool in {pool.subnet}" if pool.subnet else "pool"


def _pool_text(pool: Pool) -> str:
    peer = f'failover peer "{pool.peer}"' if pool.peer else "no failover peer"
    ranges = ", ".join(f"{lo} - {hi}" if lo != hi else lo for lo, hi in pool.ranges)
    return f"{peer}, range {ranges}" if ranges else f"{peer}, no range"


def _names(names: Iterable[str]) -> str:
    return ", ".join(f'"{n}"' for n in sorted(names))


def _at(where: Where) -> str:
    return f"{where.file}:{where.line}"


def _other(role: str) -> str:
    return "secondary" if role == "primary" else "primary"


def port_of(port: int | None) -> int:
    return DEFAULT_PORT if port is None else port


def _port_text(port: int | None) -> str:
    return f"{DEFAULT_PORT} (the default)" if port is None else str(port)


def ip_of(text: str) -> IPv4 | None:
    try:
        return IPv4(text)
    except ValueError:
        return None


def address_key(text: str) -> str:
    """An address as dhcpd means it: 192.0.2.1 however written, host names in any case."""
    ip = ip_of(text)
    return str(ip) if ip is not None else text.lower().rstrip(".")


def _same_address(a: str, b: str) -> bool:
    return address_key(a) == address_key(b)
