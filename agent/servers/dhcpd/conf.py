"""dhcpd.conf structure, as far as the pair checks need it: failover peers, pools, hosts.

Pure: a rendered tree (path -> bytes) in, a DhcpConfig out. `dhcpd -t` is the
syntax authority; this only extracts, so odd input never raises: an unknown or
malformed statement is skipped, an unclosed block ends with its file.

Statements are read in the order dhcpd reads them: an include is replaced in
place by the statements of the included file, when that file is in the tree.
Like dhcpd, a block never spans files (dhcpd parses an included file to its end).
The tokens are lexer.py's, read as dhcpd reads them: strings with their escapes
read, a 0xFF byte where a top-level statement starts ending the file.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from agent.servers.dhcpd.lexer import Token, tokens
from agent.servers.dhcpd.workdir import inside_target

# Far beyond any real tree, these stop a tree that includes itself, or includes
# the same files again and again (30 includes of 30 includes of ...), from hanging us.
MAX_INCLUDE_DEPTH = 32
MAX_INCLUDES = 1000


@dataclass(frozen=True)
class Where:
    file: str  # path relative to the target, e.g. "subnets.conf"
    line: int


@dataclass(frozen=True)
class OutsideInclude(Where):
    """An include statement whose file is not under the target (a Where with its path)."""

    path: str
    target: str = ""  # the folder it left, to name the absolute path a relative one meant


@dataclass(frozen=True)
class Failover:
    """`failover peer "NAME" { ... }`: the fields dhcpd.conf(5) lists under FAILOVER."""

    name: str
    where: Where
    seq: int  # position in the order dhcpd reads statements
    role: str | None = None  # "primary" | "secondary"; None when neither is said
    address: str | None = None
    port: int | None = None
    peer_address: str | None = None
    peer_port: int | None = None
    mclt: int | None = None
    split: int | None = None
    hba: str | None = None
    max_response_delay: int | None = None
    max_unacked_updates: int | None = None
    load_balance_max_seconds: int | None = None
    other: tuple[str, ...] = ()  # any other statement inside, normalised text


@dataclass(frozen=True)
class Pool:
    """A `pool { }`, or a bare `range` in a subnet or shared-network (peer None)."""

    subnet: str  # "192.0.2.0/24", or "shared-network NAME" for a pool directly in one
    peer: str | None  # the failover peer the pool names
    ranges: tuple[tuple[str, str], ...]  # (low, high); "range 192.0.2.5;" gives (x, x)
    where: Where
    seq: int
    bare: bool = False  # a range outside any pool


@dataclass(frozen=True)
class Host:
    name: str
    fixed_addresses: tuple[str, ...]  # as written: addresses or host names
    where: Where


@dataclass(frozen=True)
class DhcpConfig:
    failovers: tuple[Failover, ...] = ()
    pools: tuple[Pool, ...] = ()
    hosts: tuple[Host, ...] = ()
    includes_outside: tuple[OutsideInclude, ...] = ()  # includes that leave the target


def parse(files: Mapping[str, bytes], main: str, target: str, hosts: bool = True) -> DhcpConfig:
    """The failover peers, pools and hosts of the tree whose main config is `main`.

    files: the rendered tree, paths relative to `target`, the folder it goes live in.
    hosts: False when only failover and pools matter (the deploy's pair check, the
    failover watch): a file without any word of theirs is then not read, so a
    hosts file of 50,000 declarations costs a search for words, not a parse.
    """
    reader = _Reader(files, target, None if hosts else PAIR_WORDS)
    statements = reader.read(main)
    found = _Found()
    _walk(statements, found)
    return DhcpConfig(
        failovers=tuple(found.failovers),
        pools=tuple(found.pools),
        hosts=tuple(found.hosts),
        includes_outside=tuple(reader.outside),
    )


def heads(
    files: Mapping[str, bytes], main: str, target: str, words: Sequence[bytes] | None = None
) -> Iterator[tuple[str, tuple[Token, ...]]]:
    """Every statement's head (its tokens before ';' or '{') with its file, in the order
    dhcpd reads them: blocks' bodies too (an `on commit { ... }` holds statements).
    words: read only the files that hold one of them (include always counts, case
    folded as dhcpd folds keywords); None, every file."""
    wanted = None if words is None else (*words, b"include")
    todo = list(reversed(_Reader(files, target, wanted).read(main)))
    while todo:
        statement = todo.pop()
        yield statement.file, statement.head
        if statement.body:
            todo.extend(reversed(statement.body))


# --- includes -----------------------------------------------------------------


# --- statements ---------------------------------------------------------------


class _Statement(NamedTuple):  # a NamedTuple, not a dataclass: a third the time to make
    head: tuple[Token, ...]  # the tokens before ';' or '{'
    file: str
    line: int
    seq: int
    body: tuple[_Statement, ...] | None  # None: a simple statement ended by ';'

    @property
    def where(self) -> Where:
        return Where(self.file, self.line)

    def values(self) -> list[str]:
        return [_text(tok) for tok in self.head]

    def words(self) -> list[str]:
        """The head's values as keywords: lower-cased, as dhcpd matches them in any case."""
        return [tok.value.lower() if tok.kind == "name" else _text(tok) for tok in self.head]


@dataclass
class _Block:
    """A block being read: its opening statement (none for a file) and what it holds."""

    head: tuple[Token, ...]
    file: str
    line: int
    seq: int
    children: list[_Statement] = field(default_factory=list)

    def close(self) -> _Statement:
        return _Statement(self.head, self.file, self.line, self.seq, tuple(self.children))


# Words of every statement that failover and pools depend on (dhcpd reads keywords in
# any case). A file with none of them declares no failover peer, pool, range or
# include; what else it holds (hosts, options) only the hosts checks need.
PAIR_WORDS = (b"failover", b"pool", b"range", b"include", b"subnet", b"shared-network")


def _holds_any(data: bytes, words: Sequence[bytes]) -> bool:
    lowered = data.lower()
    return any(word in lowered for word in words)


class _Reader:
    """Reads files into statements, following includes in place."""

    def __init__(
        self, files: Mapping[str, bytes], target: str, words: Sequence[bytes] | None = None
    ) -> None:
        self.files = files
        self.target = target.rstrip("/") or "/"
        # Only files holding one of these words are read (None: every file); a file
        # without them holds none of the statements the caller looks for.
        self.words = words
        self.seq = 0
        self.outside: list[OutsideInclude] = []
        self.reading: list[str] = []  # the include chain, to stop cycles
        self.reads = 0

    def read(self, rel: str) -> list[_Statement]:
        data = self.files.get(rel)
        if data is None or rel in self.reading or len(self.reading) >= MAX_INCLUDE_DEPTH:
            return []  # missing (dhcpd -t says so), or a cycle dhcpd would never finish
        self.reads += 1
        if self.reads > MAX_INCLUDES or not (self.words is None or _holds_any(data, self.words)):
            return []
        self.reading.append(rel)
        try:
            return self._statements(rel, tokens(data))
        finally:
            self.reading.pop()

    def _statements(self, rel: str, toks: Sequence[Token]) -> list[_Statement]:
        """The file's top-level statements; a stack, not recursion, holds open blocks."""
        stack = [_Block((), rel, 1, 0)]
        head: list[Token] = []
        for tok in toks:
            kind = tok.kind
            if kind == "punct" and tok.value in (";", "{", "}"):
                self._end(stack, head, rel, tok.value)
                head = []
            elif kind in ("name", "string", "punct"):
                head.append(tok)
            elif kind == "end" and not head and len(stack) == 1:
                break  # a 0xFF byte where a top-level statement starts: dhcpd stops there
            # else a comment, or an end token elsewhere: dhcpd -t refuses that
        self._simple(stack[-1], head, rel)
        while len(stack) > 1:  # unclosed at the end of the file: dhcpd -t will say so
            stack[-2].children.append(stack.pop().close())
        return stack[0].children

    def _end(self, stack: list[_Block], head: list[Token], rel: str, punct: str) -> None:
        """The head ends at ';', '{' or '}': add the statement, open or close a block."""
        if punct == "{":
            stack.append(_Block(tuple(head), rel, _line(head), self._next()))
            return
        self._simple(stack[-1], head, rel)  # before '}', the last ';' may be missing
        if punct == "}" and len(stack) > 1:  # a stray '}' at the top is dhcpd -t's to refuse
            stack[-2].children.append(stack.pop().close())

    def _simple(self, block: _Block, head: list[Token], rel: str) -> None:
        """Add `head ;` to the block, or the included file's statements in its place."""
        path = _include_path(head)
        if path is not None:
            block.children += self._include(rel, head[0].line, path)
        elif head:
            block.children.append(_Statement(tuple(head), rel, _line(head), self._next(), None))

    def _include(self, rel: str, line: int, path: str) -> list[_Statement]:
        inside = inside_target(path, self.target)
        if inside is None:
            self.outside.append(OutsideInclude(rel, line, path, self.target))
            return []
        return self.read(inside)

    def _next(self) -> int:
        self.seq += 1
        return self.seq


def _line(head: Sequence[Token]) -> int:
    return head[0].line if head else 0


def _include_path(head: Sequence[Token]) -> str | None:
    """The path of `include "path"` as dhcpd opens it, else None."""
    if len(head) != 2:
        return None
    keyword, path = head
    if (keyword.kind, keyword.value.lower(), path.kind) == ("name", "include", "string"):
        return path.c_string
    return None


def _text(tok: Token) -> str:
    """A token's value as dhcpd's C code uses it: a string up to its first NUL."""
    return tok.c_string if tok.kind == "string" else tok.value


# --- what the checks need -------------------------------------------------------


@dataclass
class _Found:
    failovers: list[Failover] = field(default_factory=list)
    pools: list[Pool] = field(default_factory=list)
    hosts: list[Host] = field(default_factory=list)


def _walk(statements: Sequence[_Statement], found: _Found) -> None:
    """Collect declarations from blocks at any depth (group, class, if/else included).

    Depth first, in reading order; a stack, not recursion, so deep nesting cannot
    exhaust Python's.
    """
    todo = [(s, "") for s in reversed(statements)]
    while todo:
        s, scope = todo.pop()
        if s.body is None:
            if scope and s.words()[:1] == ["range"]:
                found.pools.append(_bare_range(s, scope))
            continue
        words, values = s.words(), s.values()
        keyword = words[0] if words else ""
        if keyword == "failover" and words[1:2] == ["peer"] and len(words) == 3:
            found.failovers.append(_failover(s, values[2]))
        elif keyword == "pool":
            found.pools.append(_pool(s, scope))
        elif keyword == "host" and len(words) > 1:
            found.hosts.append(_host(s, values[1]))
        else:
            inner = _scope(words, values) or scope
            todo += [(child, inner) for child in reversed(s.body)]


def _scope(words: Sequence[str], values: Sequence[str]) -> str | None:
    """How a pool's place is named: its subnet, or a shared-network it sits in directly."""
    if words[:1] == ["shared-network"] and len(words) > 1:
        return f"shared-network {values[1]}"
    if words[:1] == ["subnet"] and len(words) > 3 and words[2] == "netmask":
        return _network(values[1], values[3])
    return None


def _network(address: str, netmask: str) -> str:
    try:
        return str(ipaddress.IPv4Network(f"{address}/{netmask}", strict=False))
    except ValueError:
        return f"{address} netmask {netmask}"  # not an IPv4 subnet: dhcpd -t judges it


def _pool(s: _Statement, scope: str) -> Pool:
    peer: str | None = None
    ranges: list[tuple[str, str]] = []
    for child in _simple_children(s):
        words = child.words()
        if words[:2] == ["failover", "peer"] and len(words) == 3:
            peer = child.values()[2]
        elif words[:1] == ["range"]:
            ranges += _range(child.values()[1:])
    return Pool(scope, peer, tuple(ranges), s.where, s.seq)


def _bare_range(s: _Statement, scope: str) -> Pool:
    """A range outside any pool: dhcpd serves it as a pool without failover."""
    return Pool(scope, None, tuple(_range(s.values()[1:])), s.where, s.seq, bare=True)


def _range(words: Sequence[str]) -> list[tuple[str, str]]:
    """`range [dynamic-bootp] low [high]`; anything else is dhcpd -t's to refuse."""
    addresses = [w for w in words if w.lower() != "dynamic-bootp"]
    if len(addresses) == 1:
        return [(addresses[0], addresses[0])]
    if len(addresses) == 2:
        return [(addresses[0], addresses[1])]
    return []


def _host(s: _Statement, name: str) -> Host:
    addresses: list[str] = []
    for child in _simple_children(s):
        if child.words()[:1] == ["fixed-address"]:
            addresses += _comma_list(child.head[1:])
    return Host(name, tuple(addresses), s.where)


def _comma_list(toks: Sequence[Token]) -> list[str]:
    """`a, b, c` as ["a", "b", "c"]; tokens between commas are joined."""
    items: list[str] = [""]
    for tok in toks:
        if tok.kind == "punct" and tok.value == ",":
            items.append("")
        else:
            items[-1] += _text(tok)
    return [item for item in items if item]


def _simple_children(s: _Statement) -> list[_Statement]:
    return [child for child in s.body or () if child.body is None and child.head]


# --- failover declarations --------------------------------------------------------

# Statement keywords inside `failover peer "x" { }` -> Failover field; longest first.
_SETTINGS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("load", "balance", "max", "seconds"), "load_balance_max_seconds"),
    (("peer", "address"), "peer_address"),
    (("peer", "port"), "peer_port"),
    (("address",), "address"),
    (("port",), "port"),
    (("mclt",), "mclt"),
    (("split",), "split"),
    (("hba",), "hba"),
    (("max-response-delay",), "max_response_delay"),
    (("max-unacked-updates",), "max_unacked_updates"),
    (("primary",), "role"),
    (("secondary",), "role"),
)


def _failover(s: _Statement, name: str) -> Failover:
    settings: dict[str, str] = {}
    other: list[str] = []
    for child in _simple_children(s):
        setting = _setting(child.words(), child.values())
        if setting is None:
            other.append(_normalised(child.head))
        else:
            settings[setting[0]] = setting[1]
    text = settings.get
    return Failover(
        name=name,
        where=s.where,
        seq=s.seq,
        role=text("role"),
        address=text("address"),
        port=_int(text("port")),
        peer_address=text("peer_address"),
        peer_port=_int(text("peer_port")),
        mclt=_int(text("mclt")),
        split=_int(text("split")),
        hba=text("hba"),
        max_response_delay=_int(text("max_response_delay")),
        max_unacked_updates=_int(text("max_unacked_updates")),
        load_balance_max_seconds=_int(text("load_balance_max_seconds")),
        other=tuple(other),
    )


def _setting(words: Sequence[str], values: Sequence[str]) -> tuple[str, str] | None:
    """(field, value text) of one statement of a failover declaration, if it is known."""
    for keywords, name in _SETTINGS:
        if tuple(words[: len(keywords)]) == keywords:
            rest = "".join(values[len(keywords) :])  # "ff:ff:..." was words and colons
            return (name, words[0]) if name == "role" else (name, rest)
    return None


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isascii() and text.isdigit() else None


def _normalised(head: Sequence[Token]) -> str:
    return " ".join(f'"{_text(t)}"' if t.kind == "string" else t.value.lower() for t in head)
