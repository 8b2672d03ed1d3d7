"""Network namespaces for the lab's real dhcpd, which may serve DHCP only in there.

A dhcpd started by a test or a benchmark must never see the machine's own
interfaces: it would answer real clients. So every dhcpd the lab starts (and
every `dhcpd -t`) runs through a wrapper script that execs it inside a
namespace made here, and teardown kills whatever still runs in those
namespaces (by pid) and deletes them, reporting anything that was left.

    NetLab          the namespaces of one test or run; teardown() kills and deletes
    Namespace       one `ip netns` namespace: links, addresses, who runs in it
    dhcpd_wrapper   an executable that runs dhcpd inside a given namespace
    make_lan        a server namespace with 192.0.2.1/24, a veth to a client one
    peer_link       the example pair's two servers on one veth

tests/conftest.py makes the `netlab`, `lan` and `peer_link` fixtures of these.

Only documentation addresses (192.0.2.0/24, 198.51.100.0/24) are used, and
no interface is ever added to or moved out of the host's namespace.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab.proc import cmdline

PREFIX = "dgt-"  # every namespace the lab makes is named dgt-<random>-<role>
NETNS_DIR = Path("/run/netns")
KILL_WAIT = 5.0  # seconds a SIGKILLed leftover gets to disappear

SERVER_ADDRESS = "192.0.2.1"  # the example pair's primary (repo-template/pair.toml)
SERVER_CIDR = f"{SERVER_ADDRESS}/24"


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {shlex.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _ns_id(path: str | Path) -> tuple[int, int]:
    """A network namespace's identity: device and inode of its nsfs file."""
    st = Path(path).stat()
    return st.st_dev, st.st_ino


@dataclass(frozen=True)
class Namespace:
    name: str

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.name

    def ip(self, *args: str) -> str:
        """`ip -n NAME ...`: configures this namespace without entering it."""
        return _ip("-n", self.name, *args)

    def argv(self, *argv: str) -> list[str]:
        """argv run inside this namespace (ip netns exec execs: the pid is argv's)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def up(self, interface: str) -> None:
        self.ip("link", "set", interface, "up")

    def add_address(self, interface: str, cidr: str) -> None:
        self.ip("address", "add", cidr, "dev", interface)

    def holds(self, pid: int) -> bool:
        """Whether the process runs in this namespace (False once it is gone)."""
        try:
            return _ns_id(f"/proc/{pid}/ns/net") == _ns_id(self.path)
        except FileNotFoundError:
            return False

    def pids(self) -> list[int]:
        """Every process running in this namespace."""
        return [int(p) for p in _ip("netns", "pids", self.name).split()]

    def add_bridge(self, name: str) -> None:
        """A Linux bridge (STP off: ports forward at once, no listening delay)."""
        self.ip("link", "add", name, "type", "bridge")
        self.up(name)

    def enslave(self, interface: str, bridge: str) -> None:
        self.ip("link", "set", interface, "master", bridge)

    def add_macvlan(self, name: str, parent: str, mac: str) -> None:
        """A second MAC address on parent's link: one more host on the segment."""
        self.ip("link", "add", "link", parent, "name", name, "address", mac,
                "type", "macvlan", "mode", "bridge")  # fmt: skip
        self.up(name)

    def delete_link(self, name: str) -> None:
        self.ip("link", "delete", name)

    def add_route(self, cidr: str, interface: str) -> None:
        """cidr on-link through interface (no gateway)."""
        self.ip("route", "add", cidr, "dev", interface)


@dataclass
class NetLab:
    """The namespaces one test or run made; teardown() leaves none of them, nor anything in them."""

    namespaces: list[Namespace] = field(default_factory=list)

    def namespace(self, role: str) -> Namespace:
        ns = Namespace(f"{PREFIX}{secrets.token_hex(4)}-{role}")
        _ip("netns", "add", ns.name)
        self.namespaces.append(ns)  # recorded first: teardown must find it if a step fails
        ns.up("lo")
        return ns

    def veth(self, a: Namespace, a_if: str, b: Namespace, b_if: str) -> None:
        """A cable from a to b. Made inside a and moved to b, never in the host's namespace."""
        a.ip("link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b.name)
        a.up(a_if)
        b.up(b_if)

    def bridge_port(
        self, bridge_ns: Namespace, bridge: str, port: str, ns: Namespace, interface: str
    ) -> None:
        """Cable ns (its end named interface) to a port of bridge in bridge_ns."""
        self.veth(bridge_ns, port, ns, interface)
        bridge_ns.enslave(port, bridge)

    def teardown(self) -> list[str]:
        """Kill what still runs in our namespaces, delete them; describe what was left."""
        left: list[str] = []
        for ns in reversed(self.namespaces):
            try:
                left += [f"{ns.name}: pid {pid} {cmdline(pid)}" for pid in ns.pids()]
                _kill_all(ns)
                # A namespace lives on while a process holds it: delete only an empty one.
                _ip("netns", "delete", ns.name)
            except RuntimeError as err:
                left.append(f"{ns.name}: {err}")  # and go on with the others
        self.namespaces.clear()
        return left


def _kill_all(ns: Namespace) -> None:
    """SIGKILL each process in ns by pid (all are ours: we made ns) and wait for them."""
    deadline = time.monotonic() + KILL_WAIT
    while pids := ns.pids():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{ns.name}: processes survive SIGKILL: {pids}")
        for pid in pids:
            _signal(pid, signal.SIGKILL)
        time.sleep(0.05)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # gone between listing and killing
        os.kill(pid, sig)


def dhcpd_wrapper(path: Path, ns: Namespace, dhcpd: str) -> Path:
    """An executable that runs dhcpd with its arguments inside ns, for [dhcpd] binary.

    The agent runs `binary` both for `dhcpd -t` and as the supervised child,
    so both happen inside ns. `exec` all the way down: the Supervisor's pid is dhcpd's.
    """
    path.write_text(
        "#!/bin/sh\n"
        "# dhcpd of the lab: it may serve DHCP only inside this namespace.\n"
        f'exec {shlex.join(ns.argv(dhcpd))} "$@"\n'
    )
    path.chmod(0o755)
    return path


def logging_dhcpd_wrapper(path: Path, ns: Namespace, dhcpd: str, log: Path) -> Path:
    """dhcpd_wrapper that also appends dhcpd's output (stderr, where -d logs) to log.

    The agent's Supervisor keeps dhcpd's output in memory only; a test that runs
    the agent as a subprocess reads it here. The tee runs beside dhcpd, outside
    ns (it touches no network), and ends when dhcpd closes its stderr; dhcpd keeps
    the wrapper's pid, as with dhcpd_wrapper.
    """
    path.write_text(
        "#!/bin/bash\n"
        "# dhcpd of the lab: it may serve DHCP only inside this namespace.\n"
        f'exec {shlex.join(ns.argv(dhcpd))} "$@" 2> >(exec tee -a {shlex.quote(str(log))} >&2)\n'
    )
    path.chmod(0o755)
    return path


@dataclass(frozen=True)
class Lan:
    """One segment: the server end carries the primary's address; the client end none."""

    server: Namespace
    client: Namespace
    interface: str  # the server's end, what dhcpd is told to listen on
    client_interface: str
    address: str
    dhcpd: Path  # the wrapper: use it as [dhcpd] binary


def find_dhcpd() -> str | None:
    """The real dhcpd (Debian's isc-dhcp-server): on PATH, else in the sbin folders."""
    return shutil.which("dhcpd") or shutil.which("dhcpd", path="/usr/sbin:/sbin:/usr/bin")


# What agents whose [dhcpd] binary is a wrapper (dhcpd_wrapper) validate with: the
# wrapper's `ip netns exec` cannot run in the sandbox of `dhcpd -t`.
DHCPD = find_dhcpd() or "/usr/sbin/dhcpd"


def netns_missing() -> str | None:
    """Why namespaces cannot be made here (they need root and iproute2); None if they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_SYS_ADMIN)"
    if shutil.which("ip") is None:
        return "iproute2 is missing (no ip on PATH)"
    return None


def make_lan(netlab: NetLab, folder: Path, dhcpd: str) -> Lan:
    """A server namespace (eth0, 192.0.2.1/24) cabled to a client namespace (eth0);
    the dhcpd wrapper is written into folder."""
    server = netlab.namespace("server")
    client = netlab.namespace("client")
    netlab.veth(server, "eth0", client, "eth0")
    server.add_address("eth0", SERVER_CIDR)
    wrapper = dhcpd_wrapper(folder / "dhcpd-in-netns", server, dhcpd)
    return Lan(server, client, "eth0", "eth0", SERVER_ADDRESS, wrapper)


# --- the example pair's two servers on one cable ---------------------------------

PEER_ADDRESS = "192.0.2.2"  # the example pair's secondary (repo-template/pair.toml)


@dataclass(frozen=True)
class PeerLink:
    """Namespaces "p" (eth0 192.0.2.1/24) and "s" (eth0 192.0.2.2/24), cabled together.

    Nothing else is on the link: a failover pair talking to each other, no clients.
    """

    primary: Namespace
    secondary: Namespace
    interface: str  # eth0 on both ends

    def cut(self) -> None:
        """Take the primary's end down: both ends lose carrier, the peers each other."""
        self.primary.ip("link", "set", self.interface, "down")

    def mend(self) -> None:
        self.primary.up(self.interface)


def peer_link(netlab: NetLab) -> PeerLink:
    primary = netlab.namespace("p")
    secondary = netlab.namespace("s")
    netlab.veth(primary, "eth0", secondary, "eth0")
    primary.add_address("eth0", SERVER_CIDR)
    secondary.add_address("eth0", f"{PEER_ADDRESS}/24")
    return PeerLink(primary, secondary, "eth0")
