"""dhcpd's failover state now, asked over OMAPI through omshell(1), from isc-dhcp-server."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from agent import process
from agent.errors import CommandError, OmapiError
from agent.servers.base import PairState
from agent.servers.dhcpd.failover import STATE_NAMES, from_epoch
from agent.servers.dhcpd.lexer import Token, tokens

OMAPI_PORT = 7911  # dhcpd's and omshell's default


OMAPI_TIMEOUT = 5.0  # seconds; omshell answers in ~10 ms when dhcpd is up


KEY_ALGORITHMS = ("hmac-md5", "hmac-sha1", "hmac-sha224", "hmac-sha256", "hmac-sha384",
                  "hmac-sha512")  # fmt: skip


@dataclass(frozen=True)
class OmapiKey:
    """dhcpd.conf's `omapi-key`: the key's name, its base64 secret, its algorithm."""

    name: str
    secret: str = field(repr=False)  # never in a repr, a log line or an error
    algorithm: str = "hmac-md5"  # omshell's default, as dhcpd's


def key_of(data: bytes, where: str) -> OmapiKey:
    """The first `key NAME { algorithm ...; secret ...; }` of a key file (dhcpd.conf's
    syntax, read with its lexer); OmapiError naming `where`, never the secret."""
    code = [t for t in tokens(data) if t.kind not in ("comment", "end")]
    for i in range(len(code) - 2):
        if _word(code[i]) == "key" and code[i + 2].kind == "punct" and code[i + 2].value == "{":
            return _key_block(_text(code[i + 1]), code[i + 3 :], where)
    raise OmapiError(f"{where}: no key block (key NAME {{ algorithm ...; secret ...; }})")


def _key_block(name: str, body: Sequence[Token], where: str) -> OmapiKey:
    said: dict[str, str] = {}
    head: list[Token] = []
    for tok in body:
        if tok.kind == "punct" and tok.value in (";", "}"):
            if head:
                said[_word(head[0])] = "".join(_text(t) for t in head[1:])
            if tok.value == "}":
                break
            head = []
        else:
            head.append(tok)
    if not said.get("secret"):
        raise OmapiError(f"{where}: key {name!r} has no secret")
    algorithm = said.get("algorithm", "hmac-md5").lower().removesuffix(".sig-alg.reg.int")
    return OmapiKey(name, said["secret"], algorithm)


def _word(tok: Token) -> str:
    return tok.value.lower() if tok.kind == "name" else ""


def _text(tok: Token) -> str:
    return tok.c_string if tok.kind == "string" else tok.value


# omshell reads words: anything else in a name would change the script it runs.
_WORD = re.compile(r"[A-Za-z0-9_.:-]+")


_BASE64 = re.compile(r"[A-Za-z0-9+/]+=*")


_PEER_NAME = re.compile(r"[^\"\\\x00-\x1f\x7f]+")


_FIELD = re.compile(r"^(?:> )*(?P<name>[a-z-]+) = (?P<value>.*)$")


_HEX = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2})*")


def from_omapi(
    peer: str,
    port: int = OMAPI_PORT,
    key: OmapiKey | None = None,
    *,
    host: str = "127.0.0.1",
    omshell: Sequence[str] = ("omshell",),
    timeout: float = OMAPI_TIMEOUT,
) -> PairState:
    """The state dhcpd is in now for failover peer `peer`, through omshell(1).

    omshell ships with isc-dhcp-server. The script (and the key's secret) goes
    to its stdin, never its argv. `omshell` is the argv to run it with, e.g.
    `ip netns exec NS omshell` when dhcpd listens in another network namespace.
    Raises OmapiError when dhcpd does not answer (not started, no omapi-port,
    wrong key, unknown peer name).
    """
    script = _omshell_script(peer, host, port, key)
    try:
        done = process.run(omshell, input=script, timeout=timeout, check=False)
    except CommandError as err:
        if err.returncode == process.NOT_FOUND:
            raise OmapiError(f"{omshell[0]}: not found (it comes with isc-dhcp-server)") from err
        raise OmapiError(f"OMAPI on {host}:{port}: no answer within {timeout:g} s") from err
    fields = _omshell_fields(done.stdout)
    try:
        return _omapi_state(peer, fields)
    except OmapiError as err:
        said = _omshell_complaint(done.stdout + done.stderr, key)
        raise OmapiError(f"OMAPI on {host}:{port}, failover peer {peer!r}: {said}") from err


def _omshell_script(peer: str, host: str, port: int, key: OmapiKey | None) -> str:
    if not _PEER_NAME.fullmatch(peer):
        raise OmapiError(f"failover peer name {peer!r} cannot be asked through omshell")
    if not _WORD.fullmatch(host):
        raise OmapiError(f"OMAPI host {host!r} is not an address or a host name")
    if not 0 < port < 65536:
        raise OmapiError(f"OMAPI port {port} is not a TCP port")
    lines = [f"server {host}", f"port {port}"]
    if key is not None:
        lines += _key_lines(key)
    lines += ["connect", "new failover-state", f'set name = "{peer}"', "open"]
    return "\n".join(lines) + "\n"


def _key_lines(key: OmapiKey) -> list[str]:
    if not _WORD.fullmatch(key.name):
        raise OmapiError(f"OMAPI key name {key.name!r} cannot be given to omshell")
    if not _BASE64.fullmatch(key.secret):
        raise OmapiError(f"the secret of OMAPI key {key.name!r} is not base64")  # not shown
    if key.algorithm.lower() not in KEY_ALGORITHMS:
        raise OmapiError(f"OMAPI key algorithm {key.algorithm!r} is not one omshell knows")
    return [f"key {key.name} {key.secret}", f"key-algorithm {key.algorithm}"]


def _omshell_fields(output: str) -> dict[str, bytes]:
    """`name = value` lines: colon-separated hex, or "text" when every byte prints."""
    fields: dict[str, bytes] = {}
    for line in output.splitlines():
        if found := _FIELD.match(line):
            value = _omshell_value(found["value"].strip())
            if value is not None:
                fields[found["name"]] = value
    return fields


def _omshell_value(text: str) -> bytes | None:
    if _HEX.fullmatch(text):
        return bytes.fromhex(text.replace(":", ""))
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1].encode("latin-1", errors="replace")
    return None  # "<null>" and the like


def _omapi_state(peer: str, fields: dict[str, bytes]) -> PairState:
    try:
        mine, partner = fields["local-state"], fields["partner-state"]
    except KeyError:
        raise OmapiError("no failover state in omshell's answer") from None
    return PairState(
        peer=peer,
        mine=_state_name(mine),
        partner=_state_name(partner),
        mine_since=_stos(fields.get("local-stos")),
        partner_since=_stos(fields.get("partner-stos")),
    )


def _state_name(value: bytes) -> str:
    code = int.from_bytes(value, "big")
    return STATE_NAMES.get(code, f"unknown-state-{code}")


def _stos(value: bytes | None) -> str | None:
    """Start time of state: seconds since the epoch, big-endian."""
    if not value:
        return None
    try:
        return from_epoch(int.from_bytes(value, "big"))
    except (ValueError, OverflowError, OSError):
        return None


def _omshell_complaint(output: str, key: OmapiKey | None) -> str:
    """omshell's last words without its prompts, e.g. "can't open object: not found"."""
    lines = [line.lstrip("> ").strip() for line in output.splitlines()]
    said = next((line for line in reversed(lines) if _is_complaint(line)), "no answer")
    if key is not None:
        said = said.replace(key.secret, "***")  # omshell does not echo it; be sure
    return said


def _is_complaint(line: str) -> bool:
    return bool(line) and not line.startswith("obj:") and _FIELD.match(line) is None
