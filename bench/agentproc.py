"""The benchmarks' agents: lab.agent's AgentProcess, started inside a bench Lab.

The agent runs as users run it: its own process, uvicorn on loopback, dhcpd
supervised (inside the box's namespace through the wrapper), webhooks signed
with the secret of its config (lab/forge.py). The Lab starts it in a session
of its own and ends it, with its children, by its id.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.lab import DHCPD, DhcpdBox, Lab
from lab.agent import AgentProcess, launch
from lab.forge import SECRET
from lab.ports import free_port
from lab.toml import toml_text

START_TIMEOUT = 60.0
REQUEST_TIMEOUT = 30.0
POLL = 0.02  # seconds between two looks at /status: the resolution of "recorded"
HEALTH_TIMEOUT = 1.0  # seconds dhcpd must stay up; after "live", so no part of it
RECORD_TIMEOUT = 120.0  # seconds until a pushed commit is recorded as deployed

Tables = dict[str, dict[str, Any]]


def box_config(box: DhcpdBox, url: str, **sections: Mapping[str, Any]) -> Tables:
    """A standalone node deploying into box's target, its dhcpd supervised in box's namespace.

    Keyword sections are merged over these tables (e.g. source={"poll_interval": 10}).
    """
    tables: Tables = {
        "node": {"name": box.name, "role": "standalone"},
        "source": {"url": url, "branch": "main", "poll_interval": 0},
        "deploy": {"target": str(box.target), "state_dir": str(box.home / "state")},
        "dhcpd": {
            "restart": "supervise",
            "binary": str(box.wrapper),
            "validate_binary": DHCPD,
            "args": ["eth0"],
            "lease_file": str(box.lease_file),
            "health_timeout": HEALTH_TIMEOUT,
        },
    }
    return merged(tables, sections)


def merged(tables: Tables, sections: Mapping[str, Mapping[str, Any]]) -> Tables:
    for name, keys in sections.items():
        tables.setdefault(name, {}).update(keys)
    return tables


def start_agent(
    lab: Lab,
    home: Path,
    tables: Tables,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    wait: bool = True,
) -> AgentProcess:
    """Write home/agent.toml, start the agent; by default wait until it has deployed the head.

    port: the one [http] listen takes (chosen here if None); the webhook secret is added.
    """
    secret = home / "webhook-secret"
    secret.write_text(SECRET + "\n")
    port = port or free_port()
    http = {"listen": f"127.0.0.1:{port}", "webhook_secret_file": str(secret)}
    config = home / "agent.toml"
    config.write_text(toml_text(merged(tables, {"http": http})))
    environ = {**os.environ, **(env or {})}
    agent = launch(
        config, port, home / "agent.log",
        start=lambda argv, log: lab.start(argv, log, env=environ), stopper=lab.stop,
        timeout=START_TIMEOUT, request_timeout=REQUEST_TIMEOUT, poll=POLL,
    )  # fmt: skip
    if wait:
        agent.wait_for(lambda d: d["deployed"] is not None and d["state"] == "idle", START_TIMEOUT)
    return agent
