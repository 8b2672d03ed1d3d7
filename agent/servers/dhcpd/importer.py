"""dhcpd's side of `dhcp-gitops import` (agent.servers.base.Importer): each copy's one
failover declaration found and checked, pair.toml and the failover file's template
made from them (lift, template), and the proof that the repo renders back (proof).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from agent.config import Dhcpd
from agent.errors import DhcpGitopsError
from agent.servers.base import Copy, Files, Lifted, Proof
from agent.servers.dhcpd import conf, proof, template
from agent.servers.dhcpd.conf import Failover, OutsideInclude
from agent.servers.dhcpd.lift import (
    at,
    block_span,
    has_comments,
    holds_secret,
    keys_moved,
    lift,
    pair_toml,
    stand_in,
)
from agent.servers.dhcpd.workdir import relative_refusal


class Importer:
    """For copies of a folder that goes live at `target`, whose main file is dhcpd.config."""

    def __init__(self, dhcpd: Dhcpd, target: Path) -> None:
        self.dhcpd = dhcpd
        self.target = target

    def read(self, files: Files, role: str, where: str) -> Copy:
        parsed = conf.parse(files, self.dhcpd.config, str(self.target))
        failover = _the_failover(parsed.failovers, where, role)
        moved: list[str] = []
        if holds_secret(files[failover.where.file]):
            files, moved = self._keys_moved(files, failover.where.file, where, role)
            parsed = conf.parse(files, self.dhcpd.config, str(self.target))
            failover = _the_failover(parsed.failovers, where, role)
        secrets = tuple(rel for rel, data in files.items() if holds_secret(data))
        if failover.where.file in secrets:
            raise DhcpGitopsError(
                f"{Path(where) / failover.where.file} holds both the failover declaration and "
                "a key secret: move the key statement into a file of its own (e.g. dhcpd.keys, "
                "included from it) on the server, then import again"
            )
        notes = [*moved, *_notes(role, files, failover, parsed.includes_outside, self.target)]
        return Copy(role, where, dict(files), failover.where.file, secrets, tuple(notes))

    def _keys_moved(self, files: Files, rel: str, where: str, role: str) -> tuple[Files, list[str]]:
        """The key blocks of the failover file moved into a file of their own, which
        stays on the server (preserved), so that the declaration can be lifted."""
        keys = rel + ".keys"
        if keys in files:
            raise DhcpGitopsError(f"{Path(where) / rel} holds both the failover declaration "
                                  f"and a key secret, and {keys} exists: move the key "
                                  "statement into a file of its own on the server, then import "
                                  "again")  # fmt: skip
        include = f"{self.target}/{keys}"
        kept, moved = keys_moved(files[rel], include)
        note = (f"note: {role}: the key blocks of {rel} go to {keys}, which stays on the "
                f'server (preserved); {rel} includes it ("{include}"): before the first '
                f"deploy, write {include} on the server with the key blocks of {rel}; that "
                f"deploy then rewrites {rel} and restarts dhcpd")  # fmt: skip
        return {**files, rel: kept, keys: moved}, [note]

    def lift(self, copies: Mapping[str, Copy], names: Mapping[str, str], first: str) -> Lifted:
        failovers = {role: self._failover(copy) for role, copy in copies.items()}
        pair = lift(failovers, names)
        primary_known = "primary" in copies
        texts = {role: _utf8(copy) for role, copy in copies.items()}
        spans = {role: block_span(texts[role], failovers[role]) for role in copies}
        indent = template.block_indent(texts[first], spans[first])
        block = template.block_template(pair, indent, primary_known)
        templates = {
            role: template.failover_template(texts[role], spans[role], block) for role in copies
        }
        return Lifted(pair["failover"]["name"], pair_toml(pair, primary_known), templates)

    def verbatim(self, text: str) -> str:
        return template.verbatim(text)

    def stand_in(self, data: bytes) -> bytes:
        return stand_in(data)

    def prove(self, copy: Copy, rendered: Files, sources: Mapping[str, str]) -> Proof:
        failover = self._failover(copy)
        return proof.check(copy, failover, rendered, sources, self.dhcpd, self.target)

    def _failover(self, copy: Copy) -> Failover:
        """The declaration read() found in the copy (the same files parse the same)."""
        return conf.parse(copy.files, self.dhcpd.config, str(self.target)).failovers[0]


def _the_failover(found: Sequence[Failover], where: str, role: str) -> Failover:
    """pair.toml describes one failover peer; the copy must declare it for this role."""
    if not found:
        raise DhcpGitopsError(
            f"{where}: no failover peer declaration in the main config or the files it "
            "includes: import adopts a failover pair"
        )
    if len(found) > 1:
        said = ", ".join(f'"{f.name}" ({at(f)})' for f in found)
        raise DhcpGitopsError(f"{where} declares {len(found)} failover peers ({said}): "
                              "import adopts a pair with one")  # fmt: skip
    failover = found[0]
    if failover.role != role:
        said = f'"{failover.role};"' if failover.role else 'neither "primary;" nor "secondary;"'
        raise DhcpGitopsError(f"{where}: failover peer \"{failover.name}\" ({at(failover)}) "
                              f"says {said}, but this copy is imported as the {role}")  # fmt: skip
    return failover


def _notes(
    role: str,
    files: Files,
    failover: Failover,
    outside: Sequence[OutsideInclude],
    target: Path,
) -> Iterator[str]:
    for inc in outside:
        relative = relative_refusal(inc.path, str(target))
        if relative is not None:
            yield f"warning: {role}: {inc.file}:{inc.line}: {relative} (the agent refuses it)"
            continue
        yield (f'warning: {role}: {inc.file}:{inc.line} includes "{inc.path}", outside '
               f"{target}: the agent refuses it; move that file under {target} on the "
               "servers")  # fmt: skip
    text = files[failover.where.file].decode("utf-8", "replace")
    if has_comments(text, block_span(text, failover)):
        yield (
            f"note: {role}: the comments inside the failover declaration "
            f"({at(failover)}) are not kept: pair.toml and the template replace it"
        )


def _utf8(copy: Copy) -> str:
    try:
        return copy.files[copy.pair_file].decode("utf-8")
    except UnicodeDecodeError as err:
        path = Path(copy.where) / copy.pair_file
        raise DhcpGitopsError(f"{path}: not UTF-8 text, so it cannot become a template") from err
