"""What a git forge's webhook delivery says, and whether its sender knows our secret.

Pure functions, no I/O: the route reads the request, calls check_signature()
on the raw body first and parse() only after it passed. Every refusal is a
WebhookError whose .status the route answers with; its message names the
header or the payload field at fault, never the secret or the signature we
expected (docs/design.md, invariant 5).

    provider   proof of the secret                   event header     delivery id header
    github     X-Hub-Signature-256: sha256=<hmac>    X-GitHub-Event   X-GitHub-Delivery
    gitea      X-Gitea-Signature: <hmac>             X-Gitea-Event    X-Gitea-Delivery
    forgejo    X-Forgejo-Signature: <hmac>           X-Forgejo-Event  X-Forgejo-Delivery
    gitlab     X-Gitlab-Token: the secret itself     X-Gitlab-Event   X-Gitlab-Event-UUID
                                                                      or X-Gitlab-Webhook-UUID
    bitbucket  X-Hub-Signature: sha256=<hmac>        X-Event-Key      X-Request-UUID (Cloud)
                                                                      X-Request-Id (Data Center)
    generic    X-Signature: [sha256=]<hmac>          (always a push)  X-Delivery-Id

<hmac> is the hex HMAC-SHA256 of the raw request body keyed with the secret.
Forgejo sends both the X-Forgejo-* and the X-Gitea-* headers, and Gitea-type
hooks on Forgejo only the latter: gitea and forgejo accept either family, their
own first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, cast
from urllib.parse import parse_qs

from webhook.signatures import Check, HmacHeader, TokenHeader, WebhookError, first_header

PROVIDERS: tuple[str, ...] = ("github", "gitea", "forgejo", "gitlab", "bitbucket", "generic")

EventKind = Literal["push", "ping", "other"]

BRANCH_PREFIX = "refs/heads/"
_COMMIT_ID = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")  # SHA-1 or SHA-256 object name


@dataclass(frozen=True)
class Delivery:
    provider: str
    event: EventKind
    branch: str | None  # push: the branch, "refs/heads/" removed; None for tags and non-pushes
    sha: str | None  # push: the new head; None: branch deleted, a tag, or no head named
    delivery_id: str | None  # the forge's delivery id header, for replay detection


# --- payload fields -----------------------------------------------------------

_JsonObject = dict[str, object]


def _json_object(headers: Mapping[str, str], body: bytes) -> _JsonObject:
    try:
        value = json.loads(_json_text(headers, body))
    except json.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno}"
        raise WebhookError(400, f"body is not valid JSON: {error.msg} at {where}") from None
    except (ValueError, RecursionError):  # not UTF-8, or nested deeper than the parser goes
        raise WebhookError(400, "body is not valid JSON") from None
    return _object(value, "body")


def _json_text(headers: Mapping[str, str], body: bytes) -> bytes | str:
    # GitHub's and Gitea's "form" content type wraps the JSON in a `payload` field.
    content_type = headers.get("content-type", "").lower()
    if not content_type.startswith("application/x-www-form-urlencoded"):
        return body
    fields = parse_qs(body.decode("ascii", "replace"))
    if "payload" not in fields:
        raise WebhookError(400, "form body has no 'payload' field")
    return fields["payload"][0]


def _object(value: object, path: str) -> _JsonObject:
    if not isinstance(value, dict):
        raise WebhookError(400, f"{_label(path)} is not a JSON object")
    return cast(_JsonObject, value)


def _array(obj: _JsonObject, key: str, at: str = "") -> list[object]:
    value = _member(obj, key, at)
    if not isinstance(value, list):
        raise WebhookError(400, f"{_label(_path(at, key))} is not a list")
    return value


def _text(obj: _JsonObject, key: str, at: str = "") -> str:
    value = _member(obj, key, at)
    if not isinstance(value, str):
        raise WebhookError(400, f"{_label(_path(at, key))} is not a string")
    return value


def _member(obj: _JsonObject, key: str, at: str) -> object:
    if key not in obj:
        raise WebhookError(400, f"missing {_label(_path(at, key))}")
    return obj[key]


def _path(at: str, key: str) -> str:
    return f"{at}.{key}" if at else key


def _label(path: str) -> str:
    return "body" if path == "body" else f"field {path!r}"


def _branch(ref: str, path: str) -> str | None:
    """The branch a full ref names, or None for a tag or any other ref."""
    if not ref.startswith(BRANCH_PREFIX):
        return None
    if ref == BRANCH_PREFIX:
        raise WebhookError(400, f"{_label(path)} names no branch")
    return ref.removeprefix(BRANCH_PREFIX)


def _commit(value: str, path: str) -> str | None:
    """A commit id, or None for the all-zero id forges send for a deleted branch."""
    sha = value.strip().lower()
    if sha and not sha.strip("0"):
        return None
    if not _COMMIT_ID.fullmatch(sha):
        raise WebhookError(400, f"{_label(path)} is not a commit id")
    return sha


# --- events -------------------------------------------------------------------

_Outcome = tuple[EventKind, str | None, str | None]  # event, branch, sha
_Handler = Callable[[Mapping[str, str], bytes], _Outcome]
_TAG_PUSH: _Outcome = ("push", None, None)


def _ping(headers: Mapping[str, str], body: bytes) -> _Outcome:
    return "ping", None, None


def _other(headers: Mapping[str, str], body: bytes) -> _Outcome:
    return "other", None, None


def _ref_push(headers: Mapping[str, str], body: bytes) -> _Outcome:
    """GitHub, Gitea, Forgejo and GitLab: `ref` and `after` at the top of the payload."""
    return _ref_after(_json_object(headers, body))


def _ref_after(payload: _JsonObject) -> _Outcome:
    branch = _branch(_text(payload, "ref"), "ref")
    after = _commit(_text(payload, "after"), "after")
    if branch is None:  # a tag: its commit is not a head we could deploy
        return _TAG_PUSH
    deleted = payload.get("deleted") is True  # GitHub says so besides the zero `after`
    return "push", branch, None if deleted else after


def _gitlab_system_hook(headers: Mapping[str, str], body: bytes) -> _Outcome:
    # One header for every instance-wide event: the body's event_name tells a push.
    payload = _json_object(headers, body)
    if payload.get("event_name") in ("push", "tag_push"):
        return _ref_after(payload)
    return "other", None, None


_Change = tuple[str, str | None]  # branch, sha
_ChangeReader = Callable[[_JsonObject, str], _Change | None]


def _branch_change(changes: list[object], at: str, read: _ChangeReader) -> _Outcome:
    """Bitbucket lists every ref of a push in one delivery; Delivery holds one branch.

    One branch changed: that branch and its head. Several: branch None, which a
    receiver reads as "sync the configured branch", so a push of main and lab
    together never goes unseen. Tag changes are skipped; a push of tags only
    reads as a tag push.
    """
    found = [read(_object(change, f"{at}[{i}]"), f"{at}[{i}]") for i, change in enumerate(changes)]
    branches = [change for change in found if change is not None]
    if not branches:
        return _TAG_PUSH
    if len(branches) > 1:
        return "push", None, None
    branch, sha = branches[0]
    return "push", branch, sha


def _bitbucket_cloud_push(headers: Mapping[str, str], body: bytes) -> _Outcome:
    push = _object(_member(_json_object(headers, body), "push", ""), "push")
    return _branch_change(_array(push, "changes", "push"), "push.changes", _cloud_change)


def _cloud_change(change: _JsonObject, at: str) -> _Change | None:
    # `new` is null when the branch was deleted; `old` still names it then.
    side = "new" if change.get("new") is not None else "old"
    ref = _object(_member(change, side, at), f"{at}.{side}")
    if ref.get("type") != "branch":
        return None
    name = _text(ref, "name", f"{at}.{side}")
    if side == "old":
        return name, None
    target = _object(_member(ref, "target", f"{at}.new"), f"{at}.new.target")
    return name, _commit(_text(target, "hash", f"{at}.new.target"), f"{at}.new.target.hash")


def _bitbucket_server_push(headers: Mapping[str, str], body: bytes) -> _Outcome:
    changes = _array(_json_object(headers, body), "changes")
    return _branch_change(changes, "changes", _server_change)


def _server_change(change: _JsonObject, at: str) -> _Change | None:
    ref = _object(_member(change, "ref", at), f"{at}.ref")
    branch = _branch(_text(ref, "id", f"{at}.ref"), f"{at}.ref.id")
    if branch is None:
        return None
    if change.get("type") == "DELETE":
        return branch, None
    return branch, _commit(_text(change, "toHash", at), f"{at}.toHash")


def _generic_push(headers: Mapping[str, str], body: bytes) -> _Outcome:
    """An empty body asks to sync the configured branch; JSON may name a branch and a head."""
    if not body.strip():
        return "push", None, None
    payload = {k: v for k, v in _json_object(headers, body).items() if v is not None}
    if "ref" not in payload:
        return "push", _generic_branch(payload), _generic_sha(payload)
    branch = _branch(_text(payload, "ref"), "ref")
    if branch is None:
        return _TAG_PUSH
    return "push", branch, _generic_sha(payload)


def _generic_branch(payload: _JsonObject) -> str | None:
    if "branch" not in payload:
        return None
    name = _text(payload, "branch").removeprefix(BRANCH_PREFIX)
    if not name.strip():
        raise WebhookError(400, "field 'branch' is empty")
    return name


def _generic_sha(payload: _JsonObject) -> str | None:
    key = "after" if "after" in payload else "sha"
    return _commit(_text(payload, key), key) if key in payload else None


# --- providers ----------------------------------------------------------------


@dataclass(frozen=True)
class _Forge:
    check: Check
    event_headers: tuple[str, ...]  # () for generic: every delivery is a push
    handlers: Mapping[str, _Handler]  # event header value -> handler; others are "other"
    delivery_headers: tuple[str, ...]


_GITEA_HANDLERS: Mapping[str, _Handler] = {"push": _ref_push}

_FORGES: Mapping[str, _Forge] = {
    "github": _Forge(
        check=HmacHeader(("X-Hub-Signature-256",), "sha256=", prefix_required=True),
        event_headers=("X-GitHub-Event",),
        handlers={"push": _ref_push, "ping": _ping},
        delivery_headers=("X-GitHub-Delivery",),
    ),
    "gitea": _Forge(
        check=HmacHeader(("X-Gitea-Signature", "X-Forgejo-Signature")),
        event_headers=("X-Gitea-Event", "X-Forgejo-Event"),
        handlers=_GITEA_HANDLERS,
        delivery_headers=("X-Gitea-Delivery", "X-Forgejo-Delivery"),
    ),
    "forgejo": _Forge(
        check=HmacHeader(("X-Forgejo-Signature", "X-Gitea-Signature")),
        event_headers=("X-Forgejo-Event", "X-Gitea-Event"),
        handlers=_GITEA_HANDLERS,
        delivery_headers=("X-Forgejo-Delivery", "X-Gitea-Delivery"),
    ),
    "gitlab": _Forge(
        check=TokenHeader(("X-Gitlab-Token",)),
        event_headers=("X-Gitlab-Event",),
        # GitLab's test button sends a Push Hook too: there is no ping.
        handlers={
            "Push Hook": _ref_push,
            "Tag Push Hook": _ref_push,
            "System Hook": _gitlab_system_hook,
        },
        delivery_headers=("X-Gitlab-Event-UUID", "X-Gitlab-Webhook-UUID"),
    ),
    "bitbucket": _Forge(
        check=HmacHeader(("X-Hub-Signature",), "sha256=", prefix_required=True),
        event_headers=("X-Event-Key",),
        handlers={
            "repo:push": _bitbucket_cloud_push,
            "repo:refs_changed": _bitbucket_server_push,
            "diagnostics:ping": _ping,
        },
        delivery_headers=("X-Request-UUID", "X-Request-Id"),
    ),
    "generic": _Forge(
        check=HmacHeader(("X-Signature",), "sha256="),
        event_headers=(),
        handlers={"": _generic_push},
        delivery_headers=("X-Delivery-Id",),
    ),
}


def _forge(provider: str) -> _Forge:
    forge = _FORGES.get(provider)
    if forge is None:
        raise WebhookError(404, f"unknown webhook provider; known: {', '.join(PROVIDERS)}")
    return forge


def _event_name(headers: Mapping[str, str], forge: _Forge) -> str:
    if not forge.event_headers:
        return ""
    found = first_header(headers, forge.event_headers)
    if found is None:
        raise WebhookError(400, f"missing {' or '.join(forge.event_headers)} header")
    return found[1].strip()


# --- interface ----------------------------------------------------------------


def check_signature(provider: str, headers: Mapping[str, str], body: bytes, secret: bytes) -> None:
    """Raise WebhookError unless the delivery proves its sender knows `secret`.

    `headers` has lower-case names. 401: the signature or token header is missing
    or blank; 403: it does not match (or no secret is configured); 404: unknown provider.
    """
    forge = _forge(provider)
    if not secret:  # an empty key signs for anyone
        raise WebhookError(403, "no webhook secret is configured: refusing every delivery")
    forge.check(headers, body, secret)


def parse(provider: str, headers: Mapping[str, str], body: bytes) -> Delivery:
    """What a (signature-checked) delivery asks for; WebhookError(400) names a bad field."""
    forge = _forge(provider)
    handler = forge.handlers.get(_event_name(headers, forge), _other)
    event, branch, sha = handler(headers, body)
    found = first_header(headers, forge.delivery_headers)
    delivery_id = found[1].strip() if found else None
    return Delivery(provider, event, branch, sha, delivery_id)


def headers_read() -> dict[str, str]:
    """Every header some provider reads, and what it carries for which: for the API's docs."""
    uses: dict[str, dict[str, list[str]]] = {}
    for provider, forge in _FORGES.items():
        roles = (
            (forge.check.proof, forge.check.names),
            ("event", forge.event_headers),
            ("delivery id", forge.delivery_headers),
        )
        for role, names in roles:
            for name in names:
                uses.setdefault(name, {}).setdefault(role, []).append(provider)
    return {
        name: "; ".join(f"{role} for {', '.join(providers)}" for role, providers in by.items())
        for name, by in uses.items()
    }
