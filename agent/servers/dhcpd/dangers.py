"""Plan's dangers: a change that passes every check but hurts a running pair.

repo-template/README.md "Dangerous changes" explains each; `plan` shows them in a
PR for the reviewer to decide. before/after are one side's config at two commits.
"""

from __future__ import annotations

from agent.servers.dhcpd.conf import DhcpConfig, Failover
from agent.servers.dhcpd.pair import IPv4, address_key, ip_of, port_of


def dangers(before: DhcpConfig, after: DhcpConfig) -> list[str]:
    """Warnings, worded for a pull request, about what the change does to a live pair."""
    old = {f.name: f for f in before.failovers}
    new = {f.name: f for f in after.failovers}
    said = _renames(sorted(old.keys() - new.keys()), sorted(new.keys() - old.keys()))
    for name in sorted(old.keys() & new.keys()):
        said += _setting_changes(old[name], new[name])
    return said + _ranges_dropped(before, after)


def _renames(gone: list[str], added: list[str]) -> list[str]:
    if len(gone) == len(added) == 1:
        return [
            f'the failover peer "{gone[0]}" is renamed "{added[0]}": both servers lose '
            "the pair's state and fall into recover-wait, giving out no new addresses until "
            "mclt has passed"
        ]
    # A peer only added is a new relationship: nothing running that it could hurt.
    return [f'the failover peer "{name}" is removed: its pools lose failover' for name in gone]


# Failover fields whose change matters, and what it does to the running pair.
_TAKEN_OVER = (
    "set on the primary, it takes effect when the primary restarts onto it; "
    "a capacity and recovery decision"
)


_LINK_DOWN = "the failover link is down until both servers have deployed it"


_WATCHED = (
    ("mclt", _TAKEN_OVER),
    ("split", _TAKEN_OVER + " (it moves clients between the servers)"),
    ("hba", _TAKEN_OVER + " (it moves clients between the servers)"),
    ("address", _LINK_DOWN),
    ("port", _LINK_DOWN),
    ("peer_address", _LINK_DOWN),
    ("peer_port", _LINK_DOWN),
)


def _setting_changes(old: Failover, new: Failover) -> list[str]:
    said = []
    for name, effect in _WATCHED:
        was, now = _setting(old, name), _setting(new, name)
        if was != now:
            what = name.replace("_", " ")
            said.append(
                f'{what} of failover peer "{new.name}" changes from {was} to {now}: {effect}'
            )
    return said


def _setting(f: Failover, name: str) -> str:
    """The value as dhcpd takes it: a missing port is 647, a missing mclt is none."""
    value = getattr(f, name)
    if name.endswith("port"):
        return str(port_of(value))
    if value is None:
        return "none"
    return address_key(value) if name.endswith("address") else str(value)


def _ranges_dropped(before: DhcpConfig, after: DhcpConfig) -> list[str]:
    """Addresses that leave every pool: their clients are refused at the next renewal."""
    return [
        f"addresses {IPv4(lo)} - {IPv4(hi)} leave the pools: clients holding them must start "
        "over at their next renewal; give them to no device before max-lease-time has passed"
        for lo, hi in _minus(_covered(before), _covered(after))
    ]


def _covered(config: DhcpConfig) -> list[tuple[int, int]]:
    """Every pool's ranges as sorted integer intervals (ranges of host names skipped)."""
    intervals = []
    for pool in config.pools:
        for low, high in pool.ranges:
            lo, hi = ip_of(low), ip_of(high)
            if lo is not None and hi is not None:
                intervals.append((int(min(lo, hi)), int(max(lo, hi))))
    return sorted(intervals)


def _minus(intervals: list[tuple[int, int]], taken: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of `intervals` outside every interval of `taken` (both sorted)."""
    left = []
    for lo, hi in _merged(intervals):
        start = lo
        for t_lo, t_hi in taken:
            if t_hi < start or t_lo > hi:
                continue
            if t_lo > start:
                left.append((start, t_lo - 1))
            start = max(start, t_hi + 1)
        if start <= hi:
            left.append((start, hi))
    return left


def _merged(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in intervals:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged
