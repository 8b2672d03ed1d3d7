"""The cost of being watched: GET /status and /metrics beside a large, growing lease file.

Both endpoints report dhcpd's failover state from its lease file, which a big
site's dhcpd keeps at tens of megabytes and appends to with every lease it
grants. Two agents (restart "none": only the endpoints matter here) differ only
in their lease file: a few records, or LEASES leases with failover records.
Before each pair of requests a lease is appended to both files, as dhcpd
would; requests alternate between the two agents.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.agentproc import Tables, start_agent
from bench.lab import Lab, open_lab
from bench.push import Say
from bench.repo import BenchRepo
from bench.stats import comparison, ms_since, summary
from lab.agent import AgentProcess

LEASE = """lease 10.16.{a}.{b} {{
  starts 3 2026/11/25 00:27:45;
  ends 3 2026/11/25 01:27:45;
  tstp 3 2026/11/25 01:27:45;
  cltt 3 2026/11/25 00:27:45;
  binding state active;
  next binding state expired;
  hardware ethernet 02:00:00:01:{a:02x}:{b:02x};
  client-hostname "client-{n}";
}}
"""
FAILOVER = """failover peer "dhcp-failover" state {
  my state normal at 3 2026/11/25 00:27:45;
  partner state normal at 3 2026/11/25 00:27:45;
}
"""


def lease(n: int) -> str:
    return LEASE.format(a=n >> 8 & 255, b=n & 255, n=n)


def lease_file(path: Path, leases: int) -> Path:
    with path.open("w") as out:
        out.write(FAILOVER)
        for n in range(leases):
            out.write(lease(n))
        out.write(FAILOVER)
    return path


def run(leases: int, requests: int, say: Say) -> dict[str, Any]:
    with open_lab() as lab:
        repo = BenchRepo.create(lab.path("repo"), 50)
        started = {
            "small": _agent(lab, repo, "small", 1),
            "large": _agent(lab, repo, "large", leases),
        }
        agents = {name: agent for name, (agent, _) in started.items()}
        files = {name: path for name, (_, path) in started.items()}
        size = files["large"].stat().st_size
        say(f"watched: lease file of {leases} leases ({size / 1e6:.1f} MB), {requests} requests")
        times: dict[str, list[float]] = {f"{k} {e}": [] for k in agents for e in ENDPOINTS}
        for i in range(requests):
            for path in files.values():
                with path.open("a") as out:
                    out.write(lease(leases + i))
            order = list(agents.items()) if i % 2 else list(reversed(agents.items()))
            for name, agent in order:
                for endpoint in ENDPOINTS:
                    times[f"{name} {endpoint}"].append(_get(agent, endpoint))
    return {
        "config": {"leases": leases, "lease_file_bytes": size, "requests": requests},
        "latency_ms": {name: summary(values) for name, values in times.items()},
        "ratios": {e: comparison(times[f"large {e}"], times[f"small {e}"]) for e in ENDPOINTS},
    }


ENDPOINTS = ("/status", "/metrics")


def _agent(lab: Lab, repo: BenchRepo, name: str, leases: int) -> tuple[AgentProcess, Path]:
    """An agent whose dhcpd is someone else's (restart "none"), and its lease file."""
    home = lab.path(name)
    (home / "etc").mkdir()
    leases_path = lease_file(home / "leases", leases)
    tables: Tables = {
        "node": {"name": name, "role": "standalone"},
        "source": {"url": repo.url, "branch": "main", "poll_interval": 0},
        "deploy": {"target": str(home / "etc" / "dhcp"), "state_dir": str(home / "state")},
        "dhcpd": {"restart": "none", "lease_file": str(leases_path)},
    }
    return start_agent(lab, home, tables), leases_path


def _get(agent: AgentProcess, endpoint: str) -> float:
    start = time.perf_counter()
    agent.client.get(endpoint).raise_for_status()
    return ms_since(start)
