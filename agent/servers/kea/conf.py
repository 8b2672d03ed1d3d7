"""kea-dhcp4.conf read as far as the pair checks and the plan need: hooks, HA, subnets.

Shapes Kea would refuse (a string where a list belongs) are read as absent:
`kea-dhcp4 -t` names those, and a check here must not stop at them first.
"""

from __future__ import annotations

import ipaddress
import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from agent.servers.kea.jsonc import Document, JsonPath, ParseError, load

HA_HOOK = "libdhcp_ha.so"
LEASE_CMDS_HOOK = "libdhcp_lease_cmds.so"
# What identifies a reservation, in the order Kea tries them.
IDENTIFIERS = ("hw-address", "client-id", "duid", "circuit-id", "flex-id")


@dataclass(frozen=True)
class Peer:
    name: str
    url: str
    role: str
    path: JsonPath


@dataclass(frozen=True)
class Relationship:
    """One `high-availability` entry of libdhcp_ha.so's parameters."""

    this_server: str
    mode: str
    peers: tuple[Peer, ...]
    path: JsonPath

    def peer(self, name: str) -> Peer | None:
        return next((p for p in self.peers if p.name == name), None)


@dataclass(frozen=True)
class Subnet:
    id: object  # Kea wants an integer; kept as written so a mismatch is shown as it is
    prefix: str
    pools: tuple[str, ...]
    reservations: tuple[str, ...]  # "hw-address 00:11:..", one per reservation
    path: JsonPath


@dataclass(frozen=True)
class KeaConf:
    doc: Document
    hooks: tuple[str, ...]  # library file names (libdhcp_ha.so)
    libraries: tuple[str, ...]  # the hook libraries as the config names them (paths)
    relationships: tuple[Relationship, ...]
    subnets: tuple[Subnet, ...]
    interfaces: tuple[str, ...]  # every interface the config names

    def where(self, path: JsonPath) -> tuple[str, int | None]:
        return self.doc.where(path)


def parse(files: Mapping[str, bytes], main: str, target: str) -> KeaConf | None:
    """The config, or None when it does not parse (validation names why)."""
    try:
        doc = load(files, main, target)
    except ParseError:
        return None
    dhcp4 = _map(_map(doc.value).get("Dhcp4"))
    hooks = list(_hooks(dhcp4))
    return KeaConf(
        doc=doc,
        hooks=tuple(posixpath.basename(lib) for lib, _, _ in hooks),
        libraries=tuple(lib for lib, _, _ in hooks),
        relationships=tuple(_relationships(hooks)),
        subnets=tuple(_subnets(dhcp4)),
        interfaces=tuple(_interfaces(dhcp4)),
    )


def _map(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _hooks(dhcp4: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], JsonPath]]:
    for i, hook in enumerate(_list(dhcp4.get("hooks-libraries"))):
        hook = _map(hook)
        path: JsonPath = ("Dhcp4", "hooks-libraries", i)
        yield _str(hook.get("library")), _map(hook.get("parameters")), path


def _relationships(
    hooks: list[tuple[str, dict[str, Any], JsonPath]],
) -> Iterator[Relationship]:
    for library, parameters, path in hooks:
        if posixpath.basename(library) != HA_HOOK:
            continue
        for i, raw in enumerate(_list(parameters.get("high-availability"))):
            here = (*path, "parameters", "high-availability", i)
            raw = _map(raw)
            peers = tuple(_peers(_list(raw.get("peers")), (*here, "peers")))
            yield Relationship(
                _str(raw.get("this-server-name")), _str(raw.get("mode")), peers, here
            )


def _peers(raw: list[Any], path: JsonPath) -> Iterator[Peer]:
    for i, peer in enumerate(raw):
        peer = _map(peer)
        yield Peer(
            _str(peer.get("name")), _str(peer.get("url")), _str(peer.get("role")), (*path, i)
        )


def _subnets(dhcp4: dict[str, Any]) -> Iterator[Subnet]:
    for i, subnet in enumerate(_list(dhcp4.get("subnet4"))):
        yield _subnet(_map(subnet), ("Dhcp4", "subnet4", i))
    for n, network in enumerate(_list(dhcp4.get("shared-networks"))):
        for i, subnet in enumerate(_list(_map(network).get("subnet4"))):
            yield _subnet(_map(subnet), ("Dhcp4", "shared-networks", n, "subnet4", i))


def _subnet(raw: dict[str, Any], path: JsonPath) -> Subnet:
    pools = tuple(normal_pool(_str(_map(p).get("pool"))) for p in _list(raw.get("pools")))
    found = (_identity(_map(r)) for r in _list(raw.get("reservations")))
    return Subnet(raw.get("id"), _str(raw.get("subnet")), pools, tuple(r for r in found if r), path)


def _identity(reservation: dict[str, Any]) -> str:
    for key in IDENTIFIERS:
        if isinstance(reservation.get(key), str):
            return f"{key} {reservation[key].lower()}"
    return ""


def normal_pool(pool: str) -> str:
    """The form "192.0.2.10-192.0.2.20", whichever way it was spaced or written (a prefix too)."""
    first, last = pool_range(pool) or (None, None)
    return f"{first}-{last}" if first is not None else pool.replace(" ", "")


def pool_range(pool: str) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address] | None:
    """First and last address of "A - B" or "A/len"; None if it is neither."""
    try:
        if "-" in pool:
            first, last = (ipaddress.IPv4Address(p.strip()) for p in pool.split("-", 1))
            return first, last
        net = ipaddress.IPv4Network(pool.strip(), strict=False)
    except ValueError:
        return None
    return net.network_address, net.broadcast_address


def _interfaces(dhcp4: dict[str, Any]) -> Iterator[str]:
    """interfaces-config's list and each subnet's and shared network's `interface`."""
    yield from (
        i
        for i in _list(_map(dhcp4.get("interfaces-config")).get("interfaces"))
        if isinstance(i, str)
    )
    networks = [_map(n) for n in _list(dhcp4.get("shared-networks"))]
    subnets = [_map(s) for s in _list(dhcp4.get("subnet4"))]
    subnets += [_map(s) for n in networks for s in _list(n.get("subnet4"))]
    yield from (_str(x.get("interface")) for x in networks + subnets if x.get("interface"))
