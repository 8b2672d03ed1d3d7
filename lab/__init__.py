"""The real test hosts, shared by tests/ and bench/: never shipped in the wheel.

Agent processes, network namespaces with a real dhcpd, config repositories and
the failover pair's lab, as the tests and the benchmarks both run them. Plain
code, no pytest: tests/conftest.py makes fixtures of it, bench/ calls it.

    agent   a `dhcp-gitops agent` process and its HTTP API (AgentProcess, launch)
    forge   webhook deliveries signed as each forge signs them
    netns   network namespaces and the dhcpd wrappers that keep dhcpd inside them
    pair    the failover pair's LAN: two servers, a client, dhclient and perfdhcp
    ports   loopback and a free port on it
    proc    processes by id: pid files, /proc, bounded waits
    repo    git with a fixed identity and a config repository pushing to a bare one
    toml    TOML text for an agent's config file

It imports nothing of agent/ or webhook/ (the agent is a process it starts, its
API what it asks), and never tests/ or bench/.
"""


class LabError(Exception):
    """A host of the lab did not come up or answer as it must (the caller fails)."""
