"""How a Server applies a config: through its restarter, the same way in every backend.

A backend's Server chooses a restarter for its apply mode (supervise, command,
reload, none) and inherits these calls; it adds what differs (accept: what a
rollback would restore is the backend's own, dhcpd's lease file for one).
"""

from __future__ import annotations

from typing import Protocol

from agent.servers.base import Health


class Restarter(Protocol):
    """One apply mode of a server (agent.servers.base.Server's apply half)."""

    def restart(self) -> None: ...
    def verify(self) -> None: ...
    def roll_back(self) -> str: ...
    def recover(self) -> None: ...
    def stop(self) -> None: ...
    def run_live(self) -> None: ...
    def revive(self) -> str | None: ...
    def health(self) -> Health: ...


class Applied:
    """Server's apply calls, each handed to self.restarter."""

    restarter: Restarter

    def restart(self) -> None:
        self.restarter.restart()

    def verify(self) -> None:
        self.restarter.verify()

    def roll_back(self) -> str:
        return self.restarter.roll_back()

    def recover(self) -> None:
        self.restarter.recover()

    def stop(self) -> None:
        self.restarter.stop()

    def start(self) -> None:
        self.restarter.run_live()

    def revive(self) -> str | None:
        return self.restarter.revive()

    def health(self) -> Health:
        return self.restarter.health()
