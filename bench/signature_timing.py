"""Does a signature check take longer the more of a guess is right?

    .venv/bin/python bench/signature_timing.py [ROUNDS]

A comparison that stops at the first wrong character tells, through its
timing, how many leading characters of a guess are right, and an attacker then
finds a valid signature one character at a time. For every provider's check
and for the /sync token, guesses sharing 0 to all-but-one leading characters
with the right value are timed in process (over a network the jitter hides
far more; this is the part the network would add to), interleaved in random
order, ROUNDS times each, a batch of calls per timing. Printed: the median
nanoseconds per call for each shared prefix, and the spread of those medians
relative to their mean. Last, the same for a character-by-character compare
written in Python: what a leak looks like in this table.

A measurement, not a test: timings belong here, not in assertions.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import random
import statistics
import sys
import time
from collections.abc import Callable

from fastapi import HTTPException

from webhook import forges, signatures
from webhook.app import require_token

SECRET = b"bench-webhook-secret-0a1b2c3d"
TOKEN = b"bench-api-token-4e5f6a7b8c9d"
BODY = b'{"ref": "refs/heads/main", "after": "' + b"a" * 40 + b'"}'
BATCH = 200  # calls per timing: one call is too short for the clock
PREFIXES = (0.0, 0.25, 0.5, 0.75, 1.0)  # share of the value right (1.0: all but the last)

Check = Callable[[str], None]


def hexmac(body: bytes) -> str:
    return hmac.new(SECRET, body, hashlib.sha256).hexdigest()


# provider -> (header, the right value)
RIGHT = {
    "github": ("x-hub-signature-256", "sha256=" + hexmac(BODY)),
    "gitea": ("x-gitea-signature", hexmac(BODY)),
    "forgejo": ("x-forgejo-signature", hexmac(BODY)),
    "gitlab": ("x-gitlab-token", SECRET.decode()),
    "bitbucket": ("x-hub-signature", "sha256=" + hexmac(BODY)),
    "generic": ("x-signature", hexmac(BODY)),
}


def guesses(right: str) -> list[str]:
    """Guesses as long as `right`, sharing a growing prefix with it, all wrong."""
    out = []
    for share in PREFIXES:
        keep = min(int(share * len(right)), len(right) - 1)
        tail = "".join("0" if c != "0" else "1" for c in right[keep:])
        out.append(right[:keep] + tail)
    return out


def provider_check(provider: str) -> Check:
    header, _ = RIGHT[provider]

    def check(value: str) -> None:
        with contextlib.suppress(signatures.WebhookError):
            forges.check_signature(provider, {header: value}, BODY, SECRET)

    return check


def token_check(value: str) -> None:
    with contextlib.suppress(HTTPException):
        require_token(TOKEN, f"Bearer {value}")


def leaky_check(right: str) -> Check:
    def check(value: str) -> None:
        for a, b in zip(value, right, strict=True):  # stops at the first difference
            if a != b:
                return

    return check


def time_batch(check: Check, value: str) -> float:
    start = time.perf_counter_ns()
    for _ in range(BATCH):
        check(value)
    return (time.perf_counter_ns() - start) / BATCH


def medians(check: Check, values: list[str], rounds: int) -> list[float]:
    samples: dict[str, list[float]] = {v: [] for v in values}
    order = list(values)
    for _ in range(rounds):
        random.shuffle(order)  # no guess always runs first, or last, in a warm cache
        for value in order:
            samples[value].append(time_batch(check, value))
    return [statistics.median(samples[v]) for v in values]


def row(name: str, check: Check, right: str, rounds: int) -> None:
    found = medians(check, guesses(right), rounds)
    spread = (max(found) - min(found)) / statistics.mean(found) * 100
    cells = " ".join(f"{ns:9.0f}" for ns in found)
    print(f"{name:<22}{cells}   {spread:5.1f} %")


def main(rounds: int) -> None:
    heads = " ".join(f"{share:>8.0%}" for share in PREFIXES)
    print(f"ns per check, median of {rounds} rounds of {BATCH} calls; columns: share of the")
    print("value right (100%: all but the last character); last: spread of the medians\n")
    print(f"{'check':<22}{heads}   spread")
    for provider, (_, right) in RIGHT.items():
        row(provider, provider_check(provider), right, rounds)
    row("POST /sync token", token_check, TOKEN.decode(), rounds)
    leaky_right = hexmac(BODY)
    row("(leaky reference)", leaky_check(leaky_right), leaky_right, rounds)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
