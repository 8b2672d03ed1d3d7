"""The proofs a forge sends with a delivery, checked in constant time; WebhookError is what a
refused delivery (a missing or wrong proof, a payload we cannot read) answers."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from webhook import credentials


class WebhookError(Exception):
    """A delivery refused: .status is the HTTP answer (400, 401, 403 or 404)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Check(Protocol):
    """Raises WebhookError unless the headers prove the secret; `names` are the headers read."""

    @property
    def names(self) -> tuple[str, ...]: ...

    @property
    def proof(self) -> str: ...  # what the header carries, for the API's docs

    def __call__(self, headers: Mapping[str, str], body: bytes, secret: bytes) -> None: ...


@dataclass(frozen=True)
class HmacHeader:
    """The hex HMAC-SHA256 of the body, in the first of `names` that is present."""

    names: tuple[str, ...]
    prefix: str = ""
    prefix_required: bool = False
    proof: str = "the HMAC-SHA256 of the body"

    def __call__(self, headers: Mapping[str, str], body: bytes, secret: bytes) -> None:
        name, value = required_header(headers, self.names)
        given = self._hex_part(value)
        if not same(given, hmac.new(secret, body, hashlib.sha256).hexdigest()):
            raise WebhookError(403, f"{name} does not match the body signed with our secret")

    def _hex_part(self, value: str) -> str:
        # "" when a required prefix is missing: it can never equal a digest.
        value = value.strip().lower()
        if value.startswith(self.prefix):
            return value[len(self.prefix) :]
        return "" if self.prefix_required else value


@dataclass(frozen=True)
class TokenHeader:
    """GitLab sends the secret itself: it proves the sender, not the body."""

    names: tuple[str, ...]
    proof: str = "the secret itself"

    def __call__(self, headers: Mapping[str, str], body: bytes, secret: bytes) -> None:
        name, value = required_header(headers, self.names)
        if not same(value, secret):
            raise WebhookError(403, f"{name} does not match our secret")


def same(given: str, expected: str | bytes) -> bool:
    """credentials.same() on the header's text: constant time, blind to the secret's length."""
    mine = expected if isinstance(expected, bytes) else expected.encode()
    return credentials.same(given.encode("utf-8", "surrogatepass"), mine)


def required_header(headers: Mapping[str, str], names: Sequence[str]) -> tuple[str, str]:
    found = first_header(headers, names)
    if found is None:
        raise WebhookError(401, f"missing {' or '.join(names)} header")
    return found


def first_header(headers: Mapping[str, str], names: Sequence[str]) -> tuple[str, str] | None:
    """The first of `names` with a non-blank value; Gitea sends a blank one without a secret."""
    for name in names:
        value = headers.get(name.lower(), "")
        if value.strip():
            return name, value
    return None
