"""Shared fixtures over lab/: config repos, nodes, agent processes, namespaces, the pair.

The hosts themselves are lab/'s (shared with bench/); what is here only makes
fixtures of them: tmp folders, teardown, and pytest.fail where a host is missing.

    repo, make_node         the example pair's repo; a Node deploying into tmp_path
    dhcpd_binary            the real dhcpd
    start_agent             agent processes for nodes made by make_node
    netlab, lan, peer_link  network namespaces (lab/netns.py), gone after the test
    pair_lab, start_pair    the failover pair's LAN and its two agents (lab/pair.py)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent import config
from agent.engine.reconcile import Node
from agent.review.template import template_dir
from agent.servers.base import Server
from lab.agent import TOKEN, AgentProcess, launch, wait_until_up
from lab.forge import SECRET
from lab.netns import Lan, NetLab, PeerLink, find_dhcpd, make_lan, netns_missing, peer_link
from lab.pair import Pair, PairLab, build_pair_lab, clients_missing
from lab.ports import LOOPBACK, free_port
from lab.repo import ConfigRepo
from lab.toml import toml_text

# Fixture modules: ssh and https remotes, the SMTP and HTTP receivers of notifications.
pytest_plugins = ["tests.receivers", "tests.remotes"]


# --- config repos and nodes -----------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path) -> ConfigRepo:
    """The example pair from repo-template, committed and pushed."""
    r = ConfigRepo(tmp_path / "repo", template_dir())
    r.commit("Initial pair config")
    return r


NodeFactory = Callable[..., Node]


@pytest.fixture
def make_node(tmp_path: Path, repo: ConfigRepo) -> NodeFactory:
    """Write an agent.toml for a node deploying into tmp_path/<name>/ and build its Node.

    Keyword arguments are sections whose keys override the defaults, for
    example make_node(role="secondary", dhcpd={"restart": "command", ...}).
    """

    def make(
        name: str = "dhcp1",
        role: str = "primary",
        server: Server | None = None,
        **sections: Mapping[str, Any],
    ) -> Node:
        home = tmp_path / name
        (home / "etc").mkdir(parents=True, exist_ok=True)
        tables: dict[str, dict[str, Any]] = {
            "node": {"name": name, "role": role},
            "source": {"url": repo.url, "branch": "main"},
            "deploy": {"target": str(home / "etc" / "dhcp"), "state_dir": str(home / "state")},
            "dhcpd": {
                "restart": "none",
                "lease_file": str(home / "dhcpd.leases"),
                "health_timeout": 0.2,
            },
        }
        for section, keys in sections.items():
            tables.setdefault(section, {}).update(keys)
        path = home / "agent.toml"
        path.write_text(toml_text(tables))
        return Node.from_config(config.load(path), server)

    return make


@pytest.fixture(scope="session")
def dhcpd_binary() -> str:
    """The real dhcpd from Debian's isc-dhcp-server: a test that needs it fails without it."""
    found = find_dhcpd()
    if not found:
        pytest.fail("dhcpd is missing: scripts/test.sh installs isc-dhcp-server")
    return found


def require_netns() -> None:
    """Namespaces need root (CAP_SYS_ADMIN) and iproute2; fail loudly without them."""
    missing = netns_missing()
    if missing:
        pytest.fail(f"{missing}: scripts/test.sh runs the tests as root and installs iproute2")


# --- agent processes ------------------------------------------------------------

StartAgent = Callable[..., AgentProcess]


@pytest.fixture
def start_agent(tmp_path: Path, make_node: NodeFactory) -> Iterator[StartAgent]:
    """Start agents (subprocesses) for nodes made by make_node; all stopped afterwards."""
    started: list[AgentProcess] = []
    (tmp_path / "secret").write_text(SECRET + "\n")
    (tmp_path / "token").write_text(TOKEN + "\n")

    def start(
        name: str = "dhcp1", role: str = "primary", wait: bool = True, **sections: dict[str, Any]
    ) -> AgentProcess:
        port = free_port()
        http = {
            "listen": f"{LOOPBACK}:{port}",
            "webhook_secret_file": str(tmp_path / "secret"),
            "token_file": str(tmp_path / "token"),
            **sections.pop("http", {}),
        }
        source = {"poll_interval": 0, **sections.pop("source", {})}
        node = make_node(name, role, http=http, source=source, **sections)
        log = tmp_path / f"{name}-agent.log"
        agent = launch(node.config.file, port, log, wait=False)
        started.append(agent)
        if wait:
            wait_until_up(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


# --- network namespaces ---------------------------------------------------------


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


@pytest.fixture(name="lan")
def lan_fixture(netlab: NetLab, tmp_path: Path, dhcpd_binary: str) -> Lan:
    """make_lan for one test; its namespaces are gone after it."""
    return make_lan(netlab, tmp_path, dhcpd_binary)


@pytest.fixture(name="peer_link")
def peer_link_fixture(netlab: NetLab) -> PeerLink:
    """The primary's and the secondary's namespaces, on one veth; gone after the test."""
    return peer_link(netlab)


# --- the failover pair ----------------------------------------------------------


@pytest.fixture(name="pair_lab")
def pair_lab_fixture(netlab: NetLab, tmp_path: Path, dhcpd_binary: str) -> Iterator[PairLab]:
    """The pair's LAN; its dhclients are killed before netlab deletes the namespaces."""
    missing = clients_missing()
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: scripts/setup.sh --test installs them")
    tmp = tmp_path / "pairlab"
    tmp.mkdir()
    lab = build_pair_lab(netlab, tmp, dhcpd_binary)
    try:
        yield lab
    finally:
        lab.stop_clients()


StartPair = Callable[..., Pair]


@pytest.fixture(name="start_pair")
def start_pair_fixture(pair_lab: PairLab, start_agent: StartAgent) -> Iterator[StartPair]:
    """start_pair(peers=False, **sections): both agents on 127.0.0.1, deployed, dhcpd running.

    Keyword sections are extra agent config, merged into both agents' (a
    "dhcpd" one over Server.dhcpd_section()). peers=True also points each
    agent's [peer] status_url at the other's /status (rolling restarts).
    The agents are stopped (SIGTERM, which stops their dhcpd) before the lab goes.
    """
    started: list[AgentProcess] = []

    def start(peers: bool = False, **sections: dict[str, Any]) -> Pair:
        ports = {server.name: free_port() for server in pair_lab.servers} if peers else {}
        for server, other in zip(pair_lab.servers, reversed(pair_lab.servers), strict=True):
            config = {**sections, "dhcpd": {**server.dhcpd_section(), **sections.get("dhcpd", {})}}
            if peers:
                config |= _peer_sections(ports[server.name], ports[other.name], sections)
            agent = start_agent(server.name, server.role, wait=not peers, **config)
            started.append(agent)
            if peers:
                _listen_at(agent, ports[server.name])
        pair = Pair(pair_lab, *started[-2:])
        pair.wait_deployed()
        return pair

    yield start
    for agent in started:
        with contextlib.suppress(httpx.HTTPError):
            agent.stop()


def _peer_sections(port: int, peer_port: int, sections: dict[str, Any]) -> dict[str, Any]:
    """[http] listen on a port chosen here, [peer] status_url at the other agent's."""
    return {
        "http": {**sections.get("http", {}), "listen": f"{LOOPBACK}:{port}"},
        "peer": {"status_url": f"http://{LOOPBACK}:{peer_port}/status", **sections.get("peer", {})},
    }


def _listen_at(agent: AgentProcess, port: int) -> None:
    """Point agent's client at the port it listens on, then wait until it answers.

    start_agent picks its agent's port itself, too late for the other agent's
    [peer] status_url: both ports are chosen first and handed over as [http] listen.
    """
    agent.client.close()
    agent.url = f"http://{LOOPBACK}:{port}"
    agent.client = httpx.Client(base_url=agent.url, timeout=agent.request_timeout)
    wait_until_up(agent)
