"""Network namespaces for tests that run a real dhcpd, which may serve DHCP only in there.

A dhcpd started by a test must never see the machine's own interfaces: it
would answer real clients. So every dhcpd the tests start (and every
`dhcpd -t`) runs through a wrapper script that execs it inside a namespace
the test made, and teardown kills whatever still runs in those namespaces
(by pid) and deletes them, failing the test if anything was left.

    NetLab          the namespaces of one test; teardown() kills and deletes
    Namespace       one `ip netns` namespace: links, addresses, who runs in it
    dhcpd_wrapper   an executable that runs dhcpd inside a given namespace
    lan (fixture)   a server namespace with 192.0.2.1/24, a veth to a client one

tests/conftest.py registers this module (pytest_plugins), so every test can ask
for the `lan` and `netlab` fixtures by name.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PREFIX = "dgt-"  # every namespace the tests make is named dgt-<random>-<role>
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
    """The namespaces one test made; teardown() leaves none of them, nor anything in them."""

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
                left += [f"{ns.name}: pid {pid} {_cmdline(pid)}" for pid in ns.pids()]
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


def _cmdline(pid: int) -> str:
    return " ".join(_argv(pid)) or "(gone)"


def _argv(pid: int) -> list[str]:
    """The process's arguments; none once it is gone (ESRCH while it exits)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0")[:-1]]


def dhcpd_wrapper(path: Path, ns: Namespace, dhcpd: str) -> Path:
    """An executable that runs dhcpd with its arguments inside ns, for [dhcpd] binary.

    The agent runs `binary` both for `dhcpd -t` and as the supervised child,
    so both happen inside ns. `exec` all the way down: the Supervisor's pid is dhcpd's.
    """
    path.write_text(
        "#!/bin/sh\n"
        "# dhcpd for a test: it may serve DHCP only inside this namespace.\n"
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
        "# dhcpd for a test: it may serve DHCP only inside this namespace.\n"
        f'exec {shlex.join(ns.argv(dhcpd))} "$@" 2> >(exec tee -a {shlex.quote(str(log))} >&2)\n'
    )
    path.chmod(0o755)
    return path


def wait_until(condition: Callable[[], bool], timeout: float = 2.0) -> bool:
    """Poll condition (bounded) until it holds; False if it never did in time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def dhcpd_pids_using(marker: str) -> list[int]:
    """dhcpd processes in any namespace whose command line mentions marker (a tmp path)."""
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    return [pid for pid in pids if _is_dhcpd_using(pid, marker)]


def _is_dhcpd_using(pid: int, marker: str) -> bool:
    """The program is dhcpd (not an agent whose tmp path has a test name with "dhcpd")."""
    argv = _argv(pid)
    return bool(argv) and Path(argv[0]).name == "dhcpd" and any(marker in a for a in argv)


@dataclass(frozen=True)
class Lan:
    """One segment: the server end carries the primary's address; the client end none."""

    server: Namespace
    client: Namespace
    interface: str  # the server's end, what dhcpd is told to listen on
    client_interface: str
    address: str
    dhcpd: Path  # the wrapper: use it as [dhcpd] binary


def require_netns() -> None:
    """Namespaces need root (CAP_SYS_ADMIN) and iproute2; fail loudly without them."""
    if os.geteuid() != 0:
        pytest.fail("network namespace tests need root (scripts/test.sh runs them as root)")
    if shutil.which("ip") is None:
        pytest.fail("iproute2 is missing: scripts/test.sh installs it")


@pytest.fixture(name="netlab")
def netlab_fixture() -> Iterator[NetLab]:
    """A NetLab whose namespaces are gone after the test, passed or failed."""
    require_netns()
    lab = NetLab()
    try:
        yield lab
    finally:
        left = lab.teardown()
        if left:
            pytest.fail(
                "processes were still running in the test's namespaces:\n" + "\n".join(left)
            )


def make_lan(netlab: NetLab, folder: Path, dhcpd: str) -> Lan:
    """A server namespace (eth0, 192.0.2.1/24) cabled to a client namespace (eth0);
    the dhcpd wrapper is written into folder."""
    server = netlab.namespace("server")
    client = netlab.namespace("client")
    netlab.veth(server, "eth0", client, "eth0")
    server.add_address("eth0", SERVER_CIDR)
    wrapper = dhcpd_wrapper(folder / "dhcpd-in-netns", server, dhcpd)
    return Lan(server, client, "eth0", "eth0", SERVER_ADDRESS, wrapper)


@pytest.fixture(name="lan")
def lan_fixture(netlab: NetLab, tmp_path: Path, dhcpd_binary: str) -> Lan:
    """make_lan for one test; its namespaces are gone after it."""
    return make_lan(netlab, tmp_path, dhcpd_binary)


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


@pytest.fixture(name="peer_link")
def peer_link_fixture(netlab: NetLab) -> PeerLink:
    """The primary's and the secondary's namespaces, on one veth; gone after the test."""
    return peer_link(netlab)
