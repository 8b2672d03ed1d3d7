"""The `dhcp-gitops` console script: agent's commands plus `agent`, the long-running service."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from agent import cli


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(argv, extend=_add_agent_command)


def _add_agent_command(sub: Any) -> None:
    cmd = cli.command(
        sub, "agent", "run the agent: HTTP API, webhooks, poll timer, supervised dhcpd"
    )
    cmd.set_defaults(run=_agent)


def _agent(args: argparse.Namespace) -> int:
    from webhook import server  # uvicorn and FastAPI load only for the service

    return server.serve(args.config)
