"""The forge's side of an agent: webhook deliveries, signed as each forge signs them.

Every agent of the lab is configured with SECRET as its webhook secret
([http] webhook_secret_file holds it), so these are deliveries it accepts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable

SECRET = "webhook-secret-6f1e2d"  # noqa: S105 - a throwaway agent's, on loopback


def hexmac(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hexmac(body, secret)


def push_payload(sha: str, branch: str = "main") -> bytes:
    return json.dumps({"ref": f"refs/heads/{branch}", "after": sha, "deleted": False}).encode()


# provider -> (the header proving the secret, its value for a body and a secret)
SIGNERS: dict[str, tuple[str, Callable[[bytes, str], str]]] = {
    "github": ("X-Hub-Signature-256", lambda body, secret: "sha256=" + hexmac(body, secret)),
    "gitea": ("X-Gitea-Signature", hexmac),
    "forgejo": ("X-Forgejo-Signature", hexmac),
    "gitlab": ("X-Gitlab-Token", lambda body, secret: secret),
    "bitbucket": ("X-Hub-Signature", lambda body, secret: "sha256=" + hexmac(body, secret)),
    "generic": ("X-Signature", hexmac),
}
# provider -> the header and value of a push event (generic: every delivery is one)
PUSH_EVENTS = {
    "github": ("X-GitHub-Event", "push"),
    "gitea": ("X-Gitea-Event", "push"),
    "forgejo": ("X-Forgejo-Event", "push"),
    "gitlab": ("X-Gitlab-Event", "Push Hook"),
    "bitbucket": ("X-Event-Key", "repo:push"),
}


def signed_headers(provider: str, body: bytes, secret: str = SECRET) -> dict[str, str]:
    """The header that proves `secret` to `provider`'s check, for this body."""
    header, sign = SIGNERS[provider]
    return {header: sign(body, secret)}


def github_push(sha: str, delivery: str, branch: str = "main") -> tuple[bytes, dict[str, str]]:
    """GitHub's push webhook for sha: (body, headers), signed with SECRET."""
    return _github("push", push_payload(sha, branch), delivery)


def github_ping(delivery: str) -> tuple[bytes, dict[str, str]]:
    """A signed ping: the webhook's whole path (body, signature, parse) without a trigger."""
    return _github("ping", b'{"zen": "Design for failure.", "hook_id": 1}', delivery)


def _github(event: str, body: bytes, delivery: str) -> tuple[bytes, dict[str, str]]:
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": github_signature(body),
        "Content-Type": "application/json",
    }
    return body, headers
