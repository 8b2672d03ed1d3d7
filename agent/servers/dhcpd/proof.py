"""The proof of an import: a role rendered from the new repo, compared with what that
server runs today, then run through `dhcpd -t` as the agent would stage it.

Byte for byte, except the failover file: there the parsed declarations must be
equal field by field, and the text around them byte for byte.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path

from agent import tree
from agent.config import Dhcpd
from agent.errors import Problem, ValidateError
from agent.servers.base import Copy, Files, Proof
from agent.servers.dhcpd import conf, sandbox
from agent.servers.dhcpd.conf import Failover
from agent.servers.dhcpd.lift import at, block_span
from agent.servers.dhcpd.pair import DEFAULT_PORT


def check(
    copy: Copy,
    failover: Failover,
    rendered: Files,
    sources: Mapping[str, str],
    dhcpd: Dhcpd,
    target: Path,
) -> Proof:
    """The rendered role against the copy (failover: its declaration), then dhcpd -t on
    it (dhcpd.config: the main file; sources: the repo file of each rendered file)."""
    proof = Proof(copy.role, left_out=list(copy.secrets))
    compare(copy, failover, rendered, proof, dhcpd.config, target)
    run_dhcpd_t(copy, rendered, sources, proof, dhcpd, target)
    return proof


def compare(
    copy: Copy, failover: Failover, rendered: Files, proof: Proof, main: str, target: Path
) -> None:
    expected = {rel: data for rel, data in copy.files.items() if rel not in copy.secrets}
    for rel in sorted(expected.keys() | rendered.keys()):
        if rel not in rendered:
            proof.differences.append(f"{rel}: on the server, not rendered")
        elif rel not in expected:
            proof.differences.append(f"{rel}: rendered, not on the server")
        elif rendered[rel] == expected[rel]:  # the failover file too, when kept verbatim
            proof.identical.append(rel)
        elif rel == failover.where.file:
            said = failover_differences(copy, failover, rendered, main, target)
            proof.differences += said
            proof.equivalent += [] if said else [rel]
        else:
            line = first_different_line(expected[rel], rendered[rel])
            proof.differences.append(f"{rel}: differs from line {line}")


def failover_differences(
    copy: Copy, failover: Failover, rendered: Files, main: str, target: Path
) -> list[str]:
    """The parsed declarations field by field, then the text around them, byte for byte."""
    rel = failover.where.file
    found = conf.parse(rendered, main, str(target)).failovers
    if len(found) != 1 or found[0].where.file != rel:
        return [f"{rel}: the rendered tree declares {len(found)} failover peer(s) "
                f"({', '.join(at(f) for f in found)})"]  # fmt: skip
    said = [
        f"{rel}: failover {name}: {mine!r} on the server, {theirs!r} rendered"
        for name, mine, theirs in field_differences(failover, found[0])
    ]
    # UTF-8: the failover file of the copy became the template rendered here
    server = copy.files[rel].decode("utf-8")
    return said + _text_around(rel, server, rendered[rel], found[0], failover)


def field_differences(server: Failover, rendered: Failover) -> list[tuple[str, object, object]]:
    """(field, server's, rendered) where they differ; where they are and when dhcpd
    reads them aside, an unsaid port as 647 (dhcpd.conf(5)), other statements in any order."""
    said = []
    for f in fields(Failover):
        mine, theirs = getattr(server, f.name), getattr(rendered, f.name)
        if f.name not in ("where", "seq") and _comparable(f.name, mine) != _comparable(
            f.name, theirs
        ):
            said.append((f.name, mine, theirs))
    return said


def _comparable(name: str, value: object) -> object:
    if name in ("port", "peer_port"):
        return DEFAULT_PORT if value is None else value
    if name == "other" and isinstance(value, tuple):
        return sorted(value)
    return value


def _text_around(
    rel: str, server: str, rendered: bytes, found: Failover, failover: Failover
) -> list[str]:
    text = rendered.decode("utf-8", "replace")
    (start, end), (r_start, r_end) = block_span(server, failover), block_span(text, found)
    said = []
    if server[:start] != text[:r_start]:
        line = first_different_line(server[:start].encode(), text[:r_start].encode())
        said.append(f"{rel}: the text before the declaration differs from line {line}")
    if server[end:] != text[r_end:]:
        line = first_different_line(server[end:].encode(), text[r_end:].encode())
        said.append(f"{rel}: the text after the declaration differs ({line} lines after it)")
    return said


def first_different_line(a: bytes, b: bytes) -> int:
    mine, theirs = a.splitlines(keepends=True), b.splitlines(keepends=True)
    for n, (x, y) in enumerate(zip(mine, theirs, strict=False), 1):
        if x != y:
            return n
    return min(len(mine), len(theirs)) + 1


def run_dhcpd_t(
    copy: Copy,
    rendered: Files,
    sources: Mapping[str, str],
    proof: Proof,
    dhcpd: Dhcpd,
    target: Path,
) -> None:
    """dhcpd -t on the rendered role with the secret files in, as the agent stages it."""
    cannot = _cannot_run_dhcpd(dhcpd, target)
    if cannot:
        proof.validator = f"dhcpd -t skipped: {cannot}"
        return
    files = {**rendered, **{rel: copy.files[rel] for rel in copy.secrets}}
    problems = _dhcpd_t(files, sources, dhcpd, target)
    proof.validator = "dhcpd -t: refused" if problems else "dhcpd -t: ok"
    proof.differences += [f"dhcpd -t: {p}" for p in problems]


def _cannot_run_dhcpd(dhcpd: Dhcpd, target: Path) -> str | None:
    if not target.is_dir():
        return f"{target} does not exist here (dhcpd -t reads includes at live paths)"
    if shutil.which(dhcpd.binary) is None:
        return f"{dhcpd.binary} not found (install isc-dhcp-server)"
    return None


def _dhcpd_t(files: Files, sources: Mapping[str, str], dhcpd: Dhcpd, target: Path) -> list[Problem]:
    """sandbox.validate on the files staged in a temporary folder: its problems."""
    with tempfile.TemporaryDirectory(prefix="dhcp-gitops-import-") as tmp:
        stage = Path(tmp) / "stage"
        tree.write(stage, files)
        try:
            sandbox.validate(stage, target, dhcpd, sources)
        except ValidateError as err:
            return err.problems
    return []
