"""The failover declaration of a server's dhcpd.conf, found and lifted into pair.toml.

For `dhcp-gitops import`: where the declaration is in its file (so that a template
can take its place), which files hold key secrets (they stay on the server), and
pair.toml from the declarations of one or both servers. Pure: text in, text out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from agent.errors import DhcpGitopsError
from agent.servers.dhcpd.conf import Failover
from agent.servers.dhcpd.lexer import Token, tokens
from agent.servers.dhcpd.pair import ROLES

# Keys each server says of itself; equal on both servers, they move to [failover].
NODE_KEYS = (
    "address",
    "port",
    "max_response_delay",
    "max_unacked_updates",
    "load_balance_max_seconds",
    "statements",
)
PRIMARY_KEYS = ("mclt", "split", "hba")  # dhcpd.conf(5): on the primary only
_KEY_ORDER = ("name", *NODE_KEYS[:2], *PRIMARY_KEYS, *NODE_KEYS[2:])


def at(failover: Failover) -> str:
    """Where the declaration is, as file:line."""
    return f"{failover.where.file}:{failover.where.line}"


def holds_secret(data: bytes) -> bool:
    """A `key NAME { ... secret "..."; }` statement (TSIG or OMAPI): not for git."""
    opened: list[str] = []  # the first word of each open block's head
    head: list[str] = []
    for tok in tokens(data):
        if tok.kind == "punct" and tok.value == "{":
            opened.append(head[0] if head else "")
            head = []
        elif tok.kind == "punct" and tok.value in (";", "}"):
            if opened[-1:] == ["key"] and head[:1] == ["secret"]:
                return True
            if tok.value == "}" and opened:
                opened.pop()
            head = []
        elif tok.kind != "comment":
            head.append(tok.value.lower() if tok.kind == "name" else f"{tok.kind}:{tok.value}")
    return False


def stand_in(data: bytes) -> bytes:
    """The text with every key's secret masked: each byte of the value but its "="
    padding becomes "A" (base64 of zero bytes, of the same length), so the stand-in
    declares the same key, validates, and shifts no line or offset."""
    out = bytearray(data)
    for start, end in _secret_spans(data):
        out[start:end] = bytes(b if b == ord("=") else ord("A") for b in data[start:end])
    return bytes(out)


def _secret_spans(data: bytes) -> list[tuple[int, int]]:
    """Byte spans of the values of `secret ...;` in `key` blocks: a string's inside its
    quotes, any other token (unquoted base64) whole."""
    spans: list[tuple[int, int]] = []
    opened: list[str] = []  # the first word of each open block's head
    head: list[Token] = []
    for tok in tokens(data):
        if tok.kind == "punct" and tok.value == "{":
            opened.append(_word(head[0]) if head else "")
            head = []
        elif tok.kind == "punct" and tok.value in (";", "}"):
            if opened[-1:] == ["key"] and head and _word(head[0]) == "secret":
                spans += [_value_span(t) for t in head[1:]]
            if tok.value == "}" and opened:
                opened.pop()
            head = []
        elif tok.kind != "comment":
            head.append(tok)
    return spans


def _word(tok: Token) -> str:
    return tok.value.lower() if tok.kind == "name" else ""


def _value_span(tok: Token) -> tuple[int, int]:
    return (tok.start + 1, tok.end - 1) if tok.kind == "string" else (tok.start, tok.end)


def key_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) byte offsets of each top-level `key NAME { ... }` (with its `;`, if
    one follows), read with the lexer dhcpd's reading is modelled on."""
    code = [t for t in tokens(data) if t.kind not in ("comment", "end")]
    spans: list[tuple[int, int]] = []
    depth, starts_statement, i = 0, True, 0
    while i < len(code):
        tok = code[i]
        if depth == 0 and starts_statement and tok.kind == "name" and tok.value.lower() == "key":
            end = _block_end(code, i)
            if end is not None:
                spans.append((tok.start, code[end].end))
                i, starts_statement = end + 1, True
                continue
        if tok.kind == "punct" and tok.value in "{}":
            depth += 1 if tok.value == "{" else -1
        starts_statement = tok.kind == "punct" and tok.value in (";", "{", "}")
        i += 1
    return spans


def _block_end(code: Sequence[Token], key: int) -> int | None:
    """The index of the `}` (or the `;` after it) closing the key block at `key`."""
    depth = 0
    for n in range(key + 1, len(code)):
        tok = code[n]
        if tok.kind == "punct" and tok.value in "{}":
            depth += 1 if tok.value == "{" else -1
            if depth == 0:
                semicolon = n + 1 < len(code) and code[n + 1].value == ";"
                return n + 1 if semicolon else n
    return None


def keys_moved(data: bytes, include: str) -> tuple[bytes, bytes]:
    """(the file with its key blocks out and `include` in the first one's place, the key
    blocks as a file of their own): the secrets stay on the server, the rest can be
    lifted."""
    spans = key_spans(data)
    kept, keys, at_ = [], [], 0
    for n, (start, end) in enumerate(spans):
        kept.append(data[at_:start] + (f'include "{include}";'.encode() if n == 0 else b""))
        keys.append(data[start:end])
        at_ = end
    return b"".join(kept) + data[at_:], b"\n".join(keys) + b"\n"


# --- where the declaration is -----------------------------------------------------


def block_span(text: str, failover: Failover) -> tuple[int, int]:
    """(start, end) of `failover peer "NAME" { ... }` in the text of the file holding
    it: character offsets, read with the lexer conf.parse found it with."""
    data = text.encode("utf-8", "surrogateescape")
    code = [t for t in tokens(data) if t.kind != "comment"]
    for i in range(len(code) - 3):
        if code[i].line == failover.where.line and _opens(code[i : i + 4], failover.name):
            end = _closing(code, i + 3, failover)
            return _chars(data, code[i].start), _chars(data, end)
    raise DhcpGitopsError(f'{at(failover)}: failover peer "{failover.name}" not found')


def _opens(four: Sequence[Token], name: str) -> bool:
    values = [t.c_string if t.kind == "string" else t.value for t in four]
    return [v.lower() for v in values[:2]] == ["failover", "peer"] and values[2:] == [name, "{"]


def _closing(code: Sequence[Token], opening: int, failover: Failover) -> int:
    depth = 0
    for tok in code[opening:]:
        if tok.kind == "punct" and tok.value in ("{", "}"):
            depth += 1 if tok.value == "{" else -1
            if depth == 0:
                return tok.end
    raise DhcpGitopsError(f'{at(failover)}: failover peer "{failover.name}" is never closed')


def _chars(data: bytes, offset: int) -> int:
    """A byte offset as a character offset (tokens start and end between characters)."""
    return len(data[:offset].decode("utf-8", "surrogateescape"))


def has_comments(text: str, span: tuple[int, int]) -> bool:
    start, end = span
    return any(
        t.kind == "comment" for t in tokens(text[start:end].encode("utf-8", "surrogateescape"))
    )


# --- pair.toml ----------------------------------------------------------------


def lift(failovers: Mapping[str, Failover], names: Mapping[str, str]) -> dict[str, Any]:
    """pair.toml from the declarations: what both servers say alike goes to [failover],
    what each says of itself to [primary] or [secondary]. Without the other server's
    copy, it is taken to mirror this one (its address and port are our peer's)."""
    _same_name(failovers)
    primary, secondary = failovers.get("primary"), failovers.get("secondary")
    nodes = {"primary": _own(primary, secondary), "secondary": _own(secondary, primary)}
    shared = _shared(nodes)
    name = next(iter(failovers.values())).name
    table = {"name": name, **_said(shared), **_primary_only(primary)}
    return {"failover": table} | {
        role: {"name": names[role], **_without(nodes[role], shared)} for role in ROLES
    }


def _same_name(failovers: Mapping[str, Failover]) -> None:
    said = {role: f.name for role, f in failovers.items()}
    if len(set(said.values())) > 1:
        raise DhcpGitopsError(
            f"the primary's failover peer is \"{said['primary']}\", the secondary's "
            f'"{said["secondary"]}": a pair has one name (rename one on its server first)'
        )


def _own(mine: Failover | None, theirs: Failover | None) -> dict[str, Any]:
    """What a server says of itself; what its partner says of it fills the gaps."""
    said = mine or theirs
    assert said is not None  # one of the two copies was read
    values: dict[str, Any] = {
        "address": _first(mine.address if mine else None, theirs.peer_address if theirs else None),
        "port": _first(mine.port if mine else None, theirs.peer_port if theirs else None),
        "max_response_delay": said.max_response_delay,
        "max_unacked_updates": said.max_unacked_updates,
        "load_balance_max_seconds": said.load_balance_max_seconds,
        "statements": list(said.other),
    }
    return {key: value for key, value in values.items() if value is not None}


def _first(*values: object) -> object:
    return next((v for v in values if v is not None), None)


def _shared(nodes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Keys both servers give alike (never the address: each has its own)."""
    primary, secondary = nodes["primary"], nodes["secondary"]
    return {
        key: primary[key]
        for key in NODE_KEYS[1:]
        if key in primary and key in secondary and primary[key] == secondary[key]
    }


def _said(shared: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in shared.items() if value != []}  # no statements: no key


def _without(node: Mapping[str, Any], shared: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in node.items() if key not in shared}


def _primary_only(primary: Failover | None) -> dict[str, Any]:
    if primary is None:
        return {}
    values = {key: getattr(primary, key) for key in PRIMARY_KEYS}
    return {key: value for key, value in values.items() if value is not None}


def pair_toml(pair: Mapping[str, Mapping[str, Any]], primary_known: bool) -> str:
    lines = [
        "# The failover pair, lifted from the servers' failover declarations by",
        "# dhcp-gitops import. The failover file's template renders each server's",
        "# declaration from it: `node` is this server's table, `peer` the other's,",
        "# `pair` this whole file. A key in [failover] is the same on both servers;",
        "# one in [primary] or [secondary] is that server's own. `statements` are the",
        '# declaration\'s other statements, each rendered as "<statement>;".',
    ]
    for name, table in pair.items():
        lines += ["", f"[{name}]"]
        lines += [f"{key} = {toml_value(value)}" for key, value in _ordered(table)]
        if name == "failover" and not primary_known:
            lines += _unknown_primary()
    return "\n".join(lines) + "\n"


def _unknown_primary() -> list[str]:
    return [
        "# The primary's mclt and split (or hba) are not in the secondary's copy:",
        "# set them here, as the primary has them (import --peer-from reads them), e.g.",
        "# mclt = 1800",
        "# split = 128",
    ]


def _ordered(table: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return sorted(table.items(), key=lambda kv: _KEY_ORDER.index(kv[0]))


def toml_value(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string
