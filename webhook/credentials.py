"""The API's two secrets and the one way they are compared.

Both are read once at start (server.read_secrets). Every check of a caller's
proof (a forge's signature, GitLab's token, the bearer token of POST /sync)
goes through same(), so none of them can leak through timing.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass


@dataclass(frozen=True)
class Secrets:
    """The webhook secret and the API token; None turns the routes that need them off."""

    webhook: bytes | None = None
    token: bytes | None = None

    def __repr__(self) -> str:
        return "Secrets(<hidden>)"


def same(given: bytes, expected: bytes) -> bool:
    """Whether given equals expected, in time that depends on neither value.

    hmac.compare_digest is constant time only for inputs of equal length: it
    returns at once when the lengths differ, which tells an attacker the length
    of a token. Both sides are hashed to 32 bytes first, so the comparison always
    runs on equal lengths and the hash of `given` costs the same for any secret.
    """
    return hmac.compare_digest(hashlib.sha256(given).digest(), hashlib.sha256(expected).digest())
