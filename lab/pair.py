"""Real hosts for the failover pair: two dhcpd servers and a client on one bridged LAN.

    bridge namespace   br0, with one port per host below
    p (primary)        eth0 192.0.2.1/24     the example pair's primary (repo-template)
    s (secondary)      eth0 192.0.2.2/24     its secondary
    c (client)         eth0 198.51.100.250/24, plus a macvlan per dhclient exchange

Every namespace comes from the caller's NetLab (lab/netns.py), so its teardown
kills whatever still runs in them and deletes them, even when a test fails.
Each server gets a dhcpd wrapper that runs dhcpd (and `dhcpd -t`) in its
namespace and copies dhcpd's output to a file, since an agent subprocess keeps
it only in memory.

    build_pair_lab()   PairLab: namespaces, Servers (wrapper, dhcpd output),
                       dhcp_client(), perfdhcp(), unplug()/plug() a server
    Pair               the agents dhcp1 (primary) and dhcp2 (secondary) on it:
                       push, sync, wait_deployed

tests/conftest.py makes the `pair_lab` and `start_pair` fixtures of these;
bench/pair.py runs its own agents on a PairLab.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import LabError
from lab.agent import TOKEN, AgentProcess
from lab.netns import DHCPD, Namespace, NetLab, logging_dhcpd_wrapper

BRIDGE = "br0"
LAN_IF = "eth0"  # each host's end of its cable to the bridge
PREFIX_LEN = 24

# perfdhcp acts as a relay: giaddr is the client's own address, and dhcpd picks
# the subnet (and pool) from it. In 198.51.100.0/24, the example's relayed office
# network, its flood draws on 198.51.100.100-199 and leaves 192.0.2.100-199 to
# dhclient. The servers reach the relay address on-link (a route, not an address:
# a second address on eth0 would put two subnets on one interface).
RELAY_ADDRESS = "198.51.100.250"
RELAY_NETWORK = "198.51.100.0/24"
SERVER_NETWORK = "192.0.2.0/24"

HEALTH_TIMEOUT = 1.0
START_TIMEOUT = 30.0  # both agents deployed and their dhcpd running
RELEASE_TIMEOUT = 5.0
PERFDHCP_GRACE = 15.0  # beyond -p: perfdhcp waits for late answers, then reports
BOUND_REASONS = ("BOUND", "RENEW", "REBIND", "REBOOT")
CLIENT_TOOLS = {"dhclient": "isc-dhcp-client", "perfdhcp": "kea-admin"}
SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin"

# dhclient-script replacement: record what the server gave, configure nothing
# (the real script would rewrite the machine's /etc/resolv.conf).
CLIENT_SCRIPT = """#!/bin/sh
echo "$reason ${{new_ip_address:-}}" >> {record}
"""

# Fast retries so one exchange fits a short timeout; the timeout ends it anyway.
CLIENT_CONF = """timeout {timeout};
retry 1;
initial-interval 1;
backoff-cutoff 2;
"""


@dataclass(frozen=True)
class Server:
    """One dhcpd host of the pair and what its agent needs to run dhcpd there."""

    name: str  # the agent's [node] name, as in repo-template/pair.toml
    role: str
    ns: Namespace
    address: str
    interface: str
    port: str  # its cable's end on the bridge
    dhcpd: Path  # wrapper: [dhcpd] binary
    output: Path  # what dhcpd printed (every start and every dhcpd -t, appended)

    def dhcpd_section(self) -> dict[str, Any]:
        """The agent's [dhcpd] table: supervised dhcpd, inside this host's namespace."""
        return {
            "restart": "supervise",
            "binary": str(self.dhcpd),
            "validate_binary": DHCPD,
            "args": [self.interface],
            "health_timeout": HEALTH_TIMEOUT,
            "omshell": self.ns.argv("omshell"),  # OMAPI reaches dhcpd in its namespace only
        }

    def dhcpd_output(self) -> str:
        return self.output.read_text() if self.output.exists() else ""


@dataclass
class PairLab:
    bridge: Namespace
    primary: Server
    secondary: Server
    client: Namespace
    client_interface: str
    tmp: Path
    client_log: list[str] = field(default_factory=list)  # every dhclient's output, in order
    _exchanges: int = 0
    _running: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def servers(self) -> tuple[Server, Server]:
        return self.primary, self.secondary

    def dhcp_client(self, mac: str, timeout: float = 15.0) -> str | None:
        """One DHCP exchange from the client namespace as mac: the address bound, or None.

        A macvlan with that MAC carries dhclient; afterwards the lease is released
        and the macvlan, dhclient and its files are gone.
        """
        self._exchanges += 1
        interface = f"dc{self._exchanges}"
        work = self.tmp / f"dhclient-{self._exchanges}"
        work.mkdir()
        try:
            self.client.add_macvlan(interface, self.client_interface, mac)
            return self._exchange(interface, work, timeout)
        finally:
            with contextlib.suppress(RuntimeError):  # never made: nothing to delete
                self.client.delete_link(interface)
            shutil.rmtree(work)

    def _exchange(self, interface: str, work: Path, timeout: float) -> str | None:
        files = _ClientFiles.write(work, timeout)
        # -d: dhclient stays in the foreground, so the pid we hold stays dhclient's.
        with files.log.open("wb") as log:
            proc = subprocess.Popen(
                self.client.argv("dhclient", "-d", "-1", "-v", *files.options(), interface),
                stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        self._running.append(proc)
        try:
            address = _wait_bound(proc, files.record, timeout)
            if address is not None:
                self._release(interface, files)
            return address
        finally:
            _end(proc)
            self._running.remove(proc)
            self.client_log.append(f"--- {interface}\n" + files.log.read_text(errors="replace"))

    def _release(self, interface: str, files: _ClientFiles) -> None:
        """DHCPRELEASE, so a test's exchanges do not use the pool up; stops the dhclient."""
        with contextlib.suppress(subprocess.TimeoutExpired), files.log.open("ab") as log:
            subprocess.run(
                self.client.argv("dhclient", "-r", "-v", *files.options(), interface),
                stdout=subprocess.DEVNULL, stderr=log, timeout=RELEASE_TIMEOUT, check=False,
            )  # fmt: skip

    def perfdhcp(self, rate: int, seconds: float, clients: int = 40) -> dict[str, dict[str, int]]:
        """perfdhcp's DORA flood from the client namespace (broadcast on its link).

        clients distinct MACs at rate exchanges/s for seconds; returns its counters
        per exchange: {"DISCOVER-OFFER": {"sent", "received", "drops"}, "REQUEST-ACK": ...}.
        """
        argv = self.client.argv(
            "perfdhcp", "-4", "-l", self.client_interface, "-r", str(rate),
            "-p", f"{seconds:g}", "-R", str(clients), "all",
        )  # fmt: skip
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=seconds + PERFDHCP_GRACE, check=False
        )
        stats = parse_perfdhcp(done.stdout)
        if not stats:
            raise LabError(f"perfdhcp exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return stats

    def unplug(self, server: Server) -> None:
        """Take server's bridge port down: it loses the LAN (peer and clients), keeps running."""
        self.bridge.ip("link", "set", server.port, "down")

    def plug(self, server: Server) -> None:
        self.bridge.up(server.port)

    def stop_clients(self) -> None:
        """Any dhclient still running (a test failed mid-exchange): kill it by pid."""
        for proc in list(self._running):
            _end(proc)
        self._running.clear()


@dataclass(frozen=True)
class _ClientFiles:
    """One dhclient's private files: nothing of the machine's /etc/dhcp or /var/lib/dhcp."""

    conf: Path
    script: Path
    leases: Path
    pid: Path
    record: Path
    log: Path

    @classmethod
    def write(cls, work: Path, timeout: float) -> _ClientFiles:
        files = cls(
            *(work / n for n in ("dhclient.conf", "script", "leases", "pid", "record", "log"))
        )
        files.conf.write_text(CLIENT_CONF.format(timeout=max(1, int(timeout + 0.5))))
        files.script.write_text(CLIENT_SCRIPT.format(record=shlex.quote(str(files.record))))
        files.script.chmod(0o755)
        files.record.touch()
        return files

    def options(self) -> list[str]:
        return ["-cf", str(self.conf), "-sf", str(self.script),
                "-lf", str(self.leases), "-pf", str(self.pid)]  # fmt: skip


def _wait_bound(proc: subprocess.Popen[bytes], record: Path, timeout: float) -> str | None:
    """The address of the first BOUND-like record; None if dhclient gave up or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        address = _bound_address(record.read_text())
        if address is not None:
            return address
        if proc.poll() is not None:
            return None
        time.sleep(0.05)
    return None


def _bound_address(record: str) -> str | None:
    for line in record.splitlines():
        reason, _, address = line.partition(" ")
        if reason in BOUND_REASONS and address:
            return address
    return None


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Kill our dhclient by pid (ip netns exec exec'd it: the pid is dhclient's)."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=5)


_EXCHANGE = re.compile(r"^\*\*\*Statistics for: (\S+)\*\*\*$")
_COUNTER = re.compile(r"^(sent packets|received packets|drops): (\d+)$")
_COUNTER_KEYS = {"sent packets": "sent", "received packets": "received", "drops": "drops"}


def parse_perfdhcp(report: str) -> dict[str, dict[str, int]]:
    """perfdhcp's "Statistics for: DISCOVER-OFFER" (and REQUEST-ACK) sections' counters."""
    stats: dict[str, dict[str, int]] = {}
    current: dict[str, int] | None = None
    for line in report.splitlines():
        line = line.strip()
        if header := _EXCHANGE.match(line):
            current = stats.setdefault(header[1], {})
        elif current is not None and (counter := _COUNTER.match(line)):
            current[_COUNTER_KEYS[counter[1]]] = int(counter[2])
    return stats


# --- building the lab ---


def _server(
    netlab: NetLab, bridge: Namespace, tmp: Path, dhcpd: str, name: str, role: str, address: str
) -> Server:
    ns = netlab.namespace(role[0])
    port = f"to-{role[0]}"
    netlab.bridge_port(bridge, BRIDGE, port, ns, LAN_IF)
    ns.add_address(LAN_IF, f"{address}/{PREFIX_LEN}")
    ns.add_route(RELAY_NETWORK, LAN_IF)  # replies to perfdhcp's giaddr
    output = tmp / f"{name}-server-output.log"  # no "dhcpd" in it: see dhcpd_pids_using
    wrapper = logging_dhcpd_wrapper(tmp / f"{name}-dhcpd-in-netns", ns, dhcpd, output)
    return Server(name, role, ns, address, LAN_IF, port, wrapper, output)


def build_pair_lab(netlab: NetLab, tmp: Path, dhcpd: str) -> PairLab:
    """The bridge, then p, s and c cabled to it (netlab deletes them in reverse)."""
    bridge = netlab.namespace("bridge")
    bridge.add_bridge(BRIDGE)
    primary = _server(netlab, bridge, tmp, dhcpd, "dhcp1", "primary", "192.0.2.1")
    secondary = _server(netlab, bridge, tmp, dhcpd, "dhcp2", "secondary", "192.0.2.2")
    client = netlab.namespace("c")
    netlab.bridge_port(bridge, BRIDGE, "to-c", client, LAN_IF)
    client.add_address(LAN_IF, f"{RELAY_ADDRESS}/{PREFIX_LEN}")
    client.add_route(SERVER_NETWORK, LAN_IF)  # dhclient -r unicasts its DHCPRELEASE
    return PairLab(bridge, primary, secondary, client, LAN_IF, tmp)


def clients_missing() -> list[str]:
    """What of dhclient and perfdhcp (run in the client namespace) is missing, as
    "tool (package)"; empty when both are there."""
    return [
        f"{tool} ({package})"
        for tool, package in CLIENT_TOOLS.items()
        if shutil.which(tool, path=SBIN_PATH) is None
    ]


# --- the two agents ---


@dataclass
class Pair:
    """The agents of the pair, primary first."""

    lab: PairLab
    primary: AgentProcess
    secondary: AgentProcess

    @property
    def agents(self) -> tuple[AgentProcess, AgentProcess]:
        return self.primary, self.secondary

    def push(self, sha: str) -> None:
        """GitHub's push webhook to both agents, as the forge would deliver it."""
        for agent in self.agents:
            response = agent.github_push(sha)
            assert response.status_code == 202, response.text

    def sync(self) -> None:
        """POST /sync (bearer token) to both agents."""
        for agent in self.agents:
            response = agent.client.post("/sync", headers={"Authorization": f"Bearer {TOKEN}"})
            assert response.status_code == 202, response.text

    def wait_deployed(self, sha: str | None = None, timeout: float = START_TIMEOUT) -> None:
        """Both agents idle with sha (any commit if None) deployed and their dhcpd running."""
        for agent in self.agents:
            agent.wait_for(lambda d: _serving(d, sha), timeout)

    def dhcpd_pids(self) -> tuple[int, int]:
        primary, secondary = (agent.status()["dhcpd"]["pid"] for agent in self.agents)
        return primary, secondary


def _serving(doc: dict[str, Any], sha: str | None) -> bool:
    deployed = doc["deployed"]
    return (
        deployed is not None
        and (sha is None or deployed["sha"] == sha)
        and doc["state"] == "idle"
        and bool(doc["dhcpd"].get("running"))
    )
