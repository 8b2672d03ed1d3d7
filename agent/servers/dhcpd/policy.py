"""Statements that reach beyond DHCP: refused unless this node consents.

dhcpd runs as root on Debian, and a commit should change DHCP and nothing else.
These let a config do more than serve leases:

    execute(...)            runs a program as dhcpd's user, on a lease event
                            (`on commit { execute("/bin/sh", "-c", ...); }`)
    lease-file-name         write a file anywhere dhcpd may: its leases, its pid
    pid-file-name
    dhcpv6-lease-file-name
    dhcpv6-pid-file-name

Each is refused naming file and line, as a verdict of its own ("policy: ..."),
unless the node names it in `[policy] allow` of its own agent.toml, never the
repo; in CI, `dhcp-gitops validate --allow NAME` takes it from the workflow.
The statements are found by the dhcpd-exact lexer in every file dhcpd reads
(the main file and its includes, in order), keywords in any case.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator, Mapping, Sequence

from agent.errors import Problem
from agent.servers.dhcpd import conf, lexer
from agent.servers.dhcpd.lexer import Token

WHAT = {
    "execute": "runs a program as dhcpd's user (root on Debian) on a lease event",
    "lease-file-name": "makes dhcpd write its leases to a file it names",
    "pid-file-name": "makes dhcpd write its pid to a file it names",
    "dhcpv6-lease-file-name": "makes dhcpd -6 write its leases to a file it names",
    "dhcpv6-pid-file-name": "makes dhcpd -6 write its pid to a file it names",
}
GRANTS = tuple(WHAT)  # the names [policy] allow takes
_FILE_STATEMENTS = frozenset(GRANTS) - {"execute"}
# A file with neither word holds none of the statements: a hosts file of 50,000
# declarations is searched for them, not parsed (dhcpd reads keywords in any case).
WORDS = (b"execute", b"file-name")


def refusals(
    files: Mapping[str, bytes], main: str, target: str, allowed: Iterable[str] = ()
) -> list[Problem]:
    """A Problem for each statement beyond DHCP that `allowed` does not name."""
    consented = set(allowed)
    return [
        _refusal(posixpath.join(target, file), line, name)
        for file, head in conf.heads(files, main, target, WORDS)
        for name, line in _reaching(head)
        if name not in consented
    ]


def is_policy(problem: Problem) -> bool:
    return problem.message.startswith(PREFIX)


PREFIX = "policy: "


def _reaching(head: Sequence[Token]) -> Iterator[tuple[str, int]]:
    """(name, line) of each statement of the head that reaches beyond DHCP."""
    for i, tok in enumerate(head):
        if tok.kind != "name":
            continue
        word = lexer.last_name(tok.value).lower()  # dhcpd reads x.execute as execute
        if word == "execute" and _opens_call(head, i):
            yield word, tok.line
        elif i == 0 and tok.value.lower() in _FILE_STATEMENTS:
            yield tok.value.lower(), tok.line


def _opens_call(head: Sequence[Token], i: int) -> bool:
    after = head[i + 1] if i + 1 < len(head) else None
    return after is not None and after.kind == "punct" and after.value == "("


def _refusal(file: str, line: int, name: str) -> Problem:
    return Problem(
        file,
        line,
        f"{PREFIX}{name} {WHAT[name]}: refused. This node allows it only with "
        f'[policy] allow = ["{name}"] in its own agent.toml (in CI: validate --allow {name})',
    )
