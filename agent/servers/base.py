"""The seam: what the engine, the daemon and the review commands need of a DHCP server.

Everything specific to one server software (its config language, how it is
validated in the sandbox, the rules a pair of it must keep, how a new config
is applied, its health and failover or HA state) sits behind `Server`. A new
backend is one subpackage of agent/servers/ with a `Server` class, and one
value of `[node] server` naming it (agent/servers/__init__.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from agent.errors import Problem

Files = Mapping[str, bytes]  # a rendered tree: path relative to the target -> bytes
WARNING = "warning: "  # a Problem whose message starts so does not stop a deploy


def is_warning(problem: Problem) -> bool:
    return problem.message.startswith(WARNING)


def split_file(file: str) -> tuple[str, str]:
    """("secondary", "dhcpd.failover") from a pair Problem's "secondary:dhcpd.failover"."""
    role, _, path = file.partition(":")
    return role, path


@dataclass(frozen=True)
class PairState:
    """The pair relationship as this server sees it: dhcpd's failover, Kea's HA."""

    peer: str  # the relationship's name, e.g. `failover peer "..."`
    mine: str  # this server's state, e.g. "normal", "communications-interrupted"
    partner: str  # the partner's state as this server last heard it
    mine_since: str | None  # ISO 8601 UTC when convertible, else as the server wrote it
    partner_since: str | None


@dataclass(frozen=True)
class Health:
    """Whether the server runs, as far as the agent can tell with its apply mode."""

    mode: str  # how a config is applied: "supervise", "command", "none", ...
    running: bool | None = None  # None: not ours to watch (the system runs it)
    pid: int | None = None


class Language(Protocol):
    """The server's config language, pure: rendered files in, findings out."""

    @property
    def name(self) -> str:
        """The server software as users know it, for messages: "dhcpd"."""

    @property
    def main(self) -> str:
        """The main config file, relative to the target (dhcpd.conf)."""

    def validate(self, stage: Path, target: Path, sources: Mapping[str, str]) -> None:
        """ValidateError naming file and line if the staged tree would not load, read
        where only the stage is visible, at the paths it will have live."""

    def pair_problems(
        self, rendered: Mapping[str, Files], target: str, warnings: bool = True
    ) -> list[Problem]:
        """What the server cannot see in one config: each role alone, then the two
        against each other. rendered: role -> files. A Problem's file is
        "<role>:<path in the target>". warnings=False: only what refuses a commit
        (the deploy's check), so a backend may skip work that can only warn."""

    def dangers(self, before: Files, after: Files, target: str) -> list[str]:
        """Changes that pass every check but hurt a running pair, for `plan`."""


class Server(Language, Protocol):
    """One running server: its language, and how a new config goes live on it."""

    @property
    def pair_timeout(self) -> float:
        """Seconds the pair has to be back to normal after a restart (0: not checked)."""

    def restart(self) -> None:
        """Make the server load the live tree; RestartError if that fails outright."""

    def verify(self) -> None:
        """Wait the health timeout; RestartError if the server did not stay up."""

    def roll_back(self) -> str:
        """Restart on the old tree after a failed start; say what was restored."""

    def accept(self) -> None:
        """The deploy is kept: forget what a roll_back would have restored."""

    def recover(self) -> None:
        """After a crash cut a deploy short: the server runs the live tree again."""

    def start(self) -> None:
        """At agent start: run the live tree if the agent runs the server itself."""

    def adopt(self) -> bool:
        """At agent start, when the live tree is the recorded one: watch the server a
        previous agent left running on it, instead of restarting it (an agent restart
        must not interrupt DHCP); False when there is none to adopt."""

    def release(self) -> None:
        """The agent exits to be restarted: leave a server it runs itself serving, for
        the next agent to adopt; one that cannot be adopted is stopped, as by stop()."""

    def revive(self) -> str | None:
        """A supervised server that died between deploys is started again: what it
        last said; None when nothing had to be done."""

    def stop(self) -> None:
        """Stop a server the agent runs itself; leave the system's alone."""

    def health(self) -> Health: ...

    def pair_states(self) -> list[PairState]:
        """What the server last recorded of its pair relationships (cheap: for /status)."""

    def pair_normal(self) -> bool | None:
        """Whether every pair relationship is back to normal now, asked of the running
        server; None when the live config has none."""


# --- `dhcp-gitops import` ---------------------------------------------------------


@dataclass(frozen=True)
class Copy:
    """One server's config as `dhcp-gitops import` read it, from a copy of its folder."""

    role: str
    where: str  # the copy's folder, for messages
    files: dict[str, bytes]  # paths relative to the target
    pair_file: str  # the file declaring the pair: a template takes its place in the repo
    secrets: tuple[str, ...]  # files holding secrets: they stay on the server
    notes: tuple[str, ...] = ()  # for the user: what the agent would refuse, what is lost


@dataclass(frozen=True)
class Lifted:
    """The pair lifted out of the copies: pair.toml, and each pair file as a template."""

    name: str  # the pair's name, e.g. dhcpd's failover peer
    pair_toml: str
    templates: dict[str, str]  # role -> the template source of its pair file


@dataclass
class Proof:
    """One role rendered from the new repo, compared with that server's copy."""

    role: str
    identical: list[str] = field(default_factory=list)
    equivalent: list[str] = field(default_factory=list)  # pair files: declarations equal
    left_out: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    validator: str = ""  # what the validator (dhcpd -t) said, or why it did not run

    @property
    def ok(self) -> bool:
        return not self.differences


class Importer(Protocol):
    """What `dhcp-gitops import` asks of the server software: to read each server's
    copy, to lift the pair out of them, and to prove that the repo renders back."""

    def read(self, files: Files, role: str, where: str) -> Copy:
        """One server's copy; DhcpGitopsError naming `where` if it cannot become a repo."""

    def lift(self, copies: Mapping[str, Copy], names: Mapping[str, str], first: str) -> Lifted:
        """names: role -> node name; first: the role whose layout the templates follow."""

    def verbatim(self, text: str) -> str:
        """Template source that renders to exactly `text`."""

    def stand_in(self, data: bytes) -> bytes:
        """A file holding secrets with dummy ones in their place, for the repo (pair.toml
        `server_only`): it declares the same keys and validates, but holds no secret."""

    def prove(self, copy: Copy, rendered: Files, sources: Mapping[str, str]) -> Proof:
        """The role rendered from the repo against its copy, then the server's validator
        on it (sources: the repo file of each rendered file, for its messages)."""
