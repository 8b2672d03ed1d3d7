"""webhook.forges: each forge's signature and payload, as tables of cases.

The payloads in tests/payloads/ are trimmed copies of the example payloads in
each forge's webhook documentation; every test signs its body here with SECRET.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from webhook.forges import PROVIDERS, Delivery, check_signature, parse
from webhook.signatures import WebhookError

PAYLOADS = Path(__file__).parent / "payloads"
SECRET = b"It's a Secret to Everybody"  # the secret of GitHub's documented test vector
WRONG_SECRET = b"It's a secret to nobody"
SHA = "0123456789abcdef0123456789abcdef01234567"
ZERO = "0" * 40


def payload(name: str, **changes: Any) -> bytes:
    """A documented example payload, with some top-level fields changed."""
    data = json.loads((PAYLOADS / f"{name}.json").read_text())
    return json.dumps({**data, **changes}).encode()


def hexmac(body: bytes, secret: bytes = SECRET) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


# provider -> (signature header, its value for a body and a secret)
SIGNERS: dict[str, tuple[str, Callable[[bytes, bytes], str]]] = {
    "github": ("x-hub-signature-256", lambda body, secret: "sha256=" + hexmac(body, secret)),
    "gitea": ("x-gitea-signature", hexmac),
    "forgejo": ("x-forgejo-signature", hexmac),
    "gitlab": ("x-gitlab-token", lambda body, secret: secret.decode()),
    "bitbucket": ("x-hub-signature", lambda body, secret: "sha256=" + hexmac(body, secret)),
    "generic": ("x-signature", hexmac),
}
BODY = (PAYLOADS / "github_push.json").read_bytes()


def signed(provider: str, body: bytes = BODY, secret: bytes = SECRET) -> dict[str, str]:
    header, sign = SIGNERS[provider]
    return {header: sign(body, secret)}


def refusal(call: Callable[[], object]) -> WebhookError:
    with pytest.raises(WebhookError) as caught:
        call()
    return caught.value


def test_every_provider_is_covered() -> None:
    assert tuple(SIGNERS) == PROVIDERS


# --- signatures ---------------------------------------------------------------


def test_github_documented_test_vector() -> None:
    # docs.github.com, "Validating webhook deliveries": "Testing the webhook payload validation".
    signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    headers = {"x-hub-signature-256": signature}
    check_signature("github", headers, b"Hello, World!", SECRET)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_good_signature_passes(provider: str) -> None:
    check_signature(provider, signed(provider), BODY, SECRET)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("value", [None, "", "  "], ids=["absent", "empty", "blank"])
def test_missing_signature_is_401(provider: str, value: str | None) -> None:
    header, _ = SIGNERS[provider]
    headers = {} if value is None else {header: value}
    error = refusal(lambda: check_signature(provider, headers, BODY, SECRET))
    assert error.status == 401
    assert header in error.message.lower()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_wrong_secret_is_403(provider: str) -> None:
    headers = signed(provider, secret=WRONG_SECRET)
    assert refusal(lambda: check_signature(provider, headers, BODY, SECRET)).status == 403


@pytest.mark.parametrize("provider", [p for p in PROVIDERS if p != "gitlab"])
def test_signature_of_another_body_is_403(provider: str) -> None:
    headers = signed(provider, body=BODY.replace(b"main", b"evil"))
    assert refusal(lambda: check_signature(provider, headers, BODY, SECRET)).status == 403


def test_gitlab_token_does_not_cover_the_body() -> None:
    # GitLab sends the secret, not a signature: a known limit of GitLab, not ours.
    check_signature("gitlab", signed("gitlab"), b"any body at all", SECRET)


def garbage(provider: str) -> Iterator[str]:
    good = signed(provider)[SIGNERS[provider][0]]
    yield good[:-1]  # truncated
    yield good[: len(good) // 2]
    yield good + "0"
    yield good[:-1] + ("1" if good[-1] != "1" else "2")  # one digit off
    yield "sha256="
    yield "sha256=" + "z" * 64
    yield "sha1=" + hmac.new(SECRET, BODY, hashlib.sha1).hexdigest()
    yield "é" * 64
    yield "\ud800" * 8  # a lone surrogate, as no HTTP stack should pass
    yield "\x00" * 64
    yield "x" * 100_000


@pytest.mark.parametrize("provider", PROVIDERS)
def test_garbage_signature_is_403(provider: str) -> None:
    header, _ = SIGNERS[provider]
    for value in garbage(provider):
        with pytest.raises(WebhookError) as caught:
            check_signature(provider, {header: value}, BODY, SECRET)
        assert caught.value.status == 403, value[:80]


@pytest.mark.parametrize(
    ("provider", "headers"),
    [
        ("github", {"x-hub-signature-256": "sha256=" + hexmac(BODY).upper()}),
        ("gitea", {"x-forgejo-signature": hexmac(BODY)}),
        ("forgejo", {"x-gitea-signature": hexmac(BODY)}),
        ("forgejo", {"x-forgejo-signature": hexmac(BODY), "x-gitea-signature": hexmac(BODY)}),
        ("generic", {"x-signature": "sha256=" + hexmac(BODY)}),
        ("generic", {"x-signature": hexmac(BODY)}),
        ("generic", {"x-signature": f" {hexmac(BODY)}\t"}),
    ],
    ids=[
        "github-upper-case-hex",
        "gitea-accepts-forgejo-header",
        "forgejo-accepts-gitea-header",
        "forgejo-both-families",
        "generic-with-prefix",
        "generic-bare-hex",
        "generic-surrounding-space",
    ],
)
def test_accepted_signature_forms(provider: str, headers: dict[str, str]) -> None:
    check_signature(provider, headers, BODY, SECRET)


@pytest.mark.parametrize(
    ("provider", "headers"),
    [
        ("github", {"x-hub-signature-256": hexmac(BODY)}),  # the prefix is always sent
        ("github", {"x-hub-signature": "sha256=" + hexmac(BODY)}),  # Bitbucket's header
        ("bitbucket", {"x-hub-signature": hexmac(BODY)}),
        ("gitea", {"x-gitea-signature": "sha256=" + hexmac(BODY)}),
        # The provider's own header is the one checked: a bad one is not rescued.
        ("forgejo", {"x-forgejo-signature": "0" * 64, "x-gitea-signature": hexmac(BODY)}),
        ("gitea", {"x-gitea-signature": "0" * 64, "x-forgejo-signature": hexmac(BODY)}),
    ],
    ids=[
        "github-no-prefix",
        "github-wrong-header",
        "bitbucket-no-prefix",
        "gitea-prefix",
        "forgejo-bad-own-header",
        "gitea-bad-own-header",
    ],
)
def test_refused_signature_forms(provider: str, headers: dict[str, str]) -> None:
    error = refusal(lambda: check_signature(provider, headers, BODY, SECRET))
    assert error.status in (401, 403)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_no_secret_configured_refuses_everything(provider: str) -> None:
    headers = signed(provider, secret=b"")
    assert refusal(lambda: check_signature(provider, headers, BODY, b"")).status == 403


def test_unknown_provider_is_404() -> None:
    assert refusal(lambda: check_signature("gogs", {}, BODY, SECRET)).status == 404
    assert refusal(lambda: parse("gogs", {}, BODY)).status == 404


def every_signature_refusal() -> Iterator[WebhookError]:
    for provider in PROVIDERS:
        header, _ = SIGNERS[provider]
        attempts = [
            {},
            signed(provider, secret=WRONG_SECRET),
            signed(provider, body=b"another body"),
            *({header: value} for value in garbage(provider)),
        ]
        for headers in attempts:
            try:
                check_signature(provider, headers, BODY, SECRET)
            except WebhookError as error:
                yield error


def test_no_message_contains_the_secret_or_the_expected_signature() -> None:
    secrets = [SECRET.decode(), hexmac(BODY), hexmac(BODY).upper(), hexmac(b"another body")]
    errors = list(every_signature_refusal())
    assert len(errors) > 60
    for error in errors:
        text = f"{error.message} {error} {error.args!r}"
        assert not any(secret in text for secret in secrets), text


# --- payloads -----------------------------------------------------------------

GITHUB_PUSH = {"x-github-event": "push", "x-github-delivery": "72d3162e-cc78-11e3-81ab"}
GITEA_PUSH = {"x-gitea-event": "push", "x-gitea-delivery": "f6266f16-1bf3-46a5"}
FORGEJO_PUSH = {
    "x-forgejo-event": "push",
    "x-forgejo-delivery": "f6266f16-1bf3-46a5",
    "x-gitea-event": "push",
    "x-gitea-delivery": "f6266f16-1bf3-46a5",
}
GITLAB_PUSH = {"x-gitlab-event": "Push Hook", "x-gitlab-event-uuid": "13792a34-cac6"}
CLOUD_PUSH = {"x-event-key": "repo:push", "x-request-uuid": "afe4d1c5-5c51"}
SERVER_PUSH = {"x-event-key": "repo:refs_changed", "x-request-id": "bd6f2bb1-0cd4"}

GITHUB_HEAD = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"
GITEA_HEAD = "bffeb74224043ba2feb48d137756c8a9331c449a"
GITLAB_HEAD = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
CLOUD_HEAD = "709d658dc5b6d6afcd46049c2f332ee3f515a67d"
SERVER_HEAD = "178864a7d521b6f5e720b386b2c2b0ef8563e0dc"


def cloud_change(kind: str, name: str, sha: str | None) -> dict[str, Any]:
    new = None if sha is None else {"type": kind, "name": name, "target": {"hash": sha}}
    old = {"type": kind, "name": name, "target": {"hash": ZERO[:-1] + "1"}}
    return {"new": new, "old": old, "created": False, "closed": sha is None}


def cloud_push(*changes: dict[str, Any]) -> bytes:
    return payload("bitbucket_cloud_push", push={"changes": list(changes)})


def server_change(ref: str, sha: str, kind: str = "UPDATE") -> dict[str, Any]:
    ref_type = "BRANCH" if ref.startswith("refs/heads/") else "TAG"
    display = ref.split("/", 2)[-1]
    return {
        "ref": {"id": ref, "displayId": display, "type": ref_type},
        "refId": ref,
        "fromHash": SHA,
        "toHash": sha,
        "type": kind,
    }


def server_push(*changes: dict[str, Any]) -> bytes:
    return payload("bitbucket_server_refs_changed", changes=list(changes))


def form(body: bytes) -> bytes:
    return urlencode({"payload": body.decode()}).encode()


FORM = {"content-type": "application/x-www-form-urlencoded"}

PARSED = [
    # GitHub
    ("github", GITHUB_PUSH, payload("github_push"),
     ("push", "main", GITHUB_HEAD, "72d3162e-cc78-11e3-81ab")),
    ("github", {"x-github-event": "ping"}, payload("github_ping"), ("ping", None, None, None)),
    ("github", {"x-github-event": "issues"}, b"{}", ("other", None, None, None)),
    ("github", GITHUB_PUSH, payload("github_push", deleted=True, after=ZERO, head_commit=None),
     ("push", "main", None, "72d3162e-cc78-11e3-81ab")),
    ("github", GITHUB_PUSH, payload("github_push", ref="refs/tags/v1", base_ref="refs/heads/main"),
     ("push", None, None, "72d3162e-cc78-11e3-81ab")),
    ("github", GITHUB_PUSH, payload("github_push", ref="refs/heads/pair/site-b"),
     ("push", "pair/site-b", GITHUB_HEAD, "72d3162e-cc78-11e3-81ab")),
    ("github", {**GITHUB_PUSH, **FORM}, form(payload("github_push")),
     ("push", "main", GITHUB_HEAD, "72d3162e-cc78-11e3-81ab")),
    # Gitea and Forgejo
    ("gitea", GITEA_PUSH, payload("gitea_push"),
     ("push", "develop", GITEA_HEAD, "f6266f16-1bf3-46a5")),
    ("gitea", GITEA_PUSH, payload("gitea_push", after=ZERO),
     ("push", "develop", None, "f6266f16-1bf3-46a5")),
    ("gitea", GITEA_PUSH, payload("gitea_push", ref="refs/tags/v2"),
     ("push", None, None, "f6266f16-1bf3-46a5")),
    ("gitea", {"x-gitea-event": "create"}, b'{"ref": "develop", "ref_type": "branch"}',
     ("other", None, None, None)),
    ("gitea", {"x-forgejo-event": "push"}, payload("gitea_push"),
     ("push", "develop", GITEA_HEAD, None)),
    ("forgejo", FORGEJO_PUSH, payload("gitea_push"),
     ("push", "develop", GITEA_HEAD, "f6266f16-1bf3-46a5")),
    ("forgejo", {"x-gitea-event": "push", "x-gitea-delivery": "g-1"}, payload("gitea_push"),
     ("push", "develop", GITEA_HEAD, "g-1")),
    ("forgejo", {"x-forgejo-event": "issues"}, b"{}", ("other", None, None, None)),
    # GitLab
    ("gitlab", GITLAB_PUSH, payload("gitlab_push"),
     ("push", "master", GITLAB_HEAD, "13792a34-cac6")),
    ("gitlab", {"x-gitlab-event": "Push Hook", "x-gitlab-webhook-uuid": "02affd2d"},
     payload("gitlab_push"), ("push", "master", GITLAB_HEAD, "02affd2d")),
    ("gitlab", {"x-gitlab-event": "Tag Push Hook"}, payload("gitlab_tag_push"),
     ("push", None, None, None)),
    ("gitlab", GITLAB_PUSH, payload("gitlab_push", after=ZERO, checkout_sha=None, commits=[]),
     ("push", "master", None, "13792a34-cac6")),
    ("gitlab", {"x-gitlab-event": "System Hook"}, payload("gitlab_system_push"),
     ("push", "master", GITLAB_HEAD, None)),
    ("gitlab", {"x-gitlab-event": "System Hook"}, b'{"event_name": "project_create"}',
     ("other", None, None, None)),
    ("gitlab", {"x-gitlab-event": "Merge Request Hook"}, b'{"object_kind": "merge_request"}',
     ("other", None, None, None)),
    # Bitbucket Cloud
    ("bitbucket", CLOUD_PUSH, payload("bitbucket_cloud_push"),
     ("push", "main", CLOUD_HEAD, "afe4d1c5-5c51")),
    ("bitbucket", CLOUD_PUSH, cloud_push(cloud_change("branch", "main", None)),
     ("push", "main", None, "afe4d1c5-5c51")),
    ("bitbucket", CLOUD_PUSH, cloud_push(cloud_change("tag", "v1", SHA)),
     ("push", None, None, "afe4d1c5-5c51")),
    ("bitbucket", CLOUD_PUSH, cloud_push(
        cloud_change("branch", "main", SHA),
        cloud_change("branch", "lab", CLOUD_HEAD),
        cloud_change("tag", "v1", SHA)),
     ("push", None, None, "afe4d1c5-5c51")),  # several branches: sync the configured one
    ("bitbucket", CLOUD_PUSH, cloud_push(
        cloud_change("branch", "lab", CLOUD_HEAD), cloud_change("tag", "v1", SHA)),
     ("push", "lab", CLOUD_HEAD, "afe4d1c5-5c51")),
    ("bitbucket", CLOUD_PUSH, cloud_push(), ("push", None, None, "afe4d1c5-5c51")),
    ("bitbucket", {"x-event-key": "pullrequest:created"}, b"{}", ("other", None, None, None)),
    # Bitbucket Data Center / Server
    ("bitbucket", SERVER_PUSH, payload("bitbucket_server_refs_changed"),
     ("push", "master", SERVER_HEAD, "bd6f2bb1-0cd4")),
    ("bitbucket", SERVER_PUSH, server_push(server_change("refs/heads/master", ZERO, "DELETE")),
     ("push", "master", None, "bd6f2bb1-0cd4")),
    ("bitbucket", SERVER_PUSH, server_push(server_change("refs/tags/v1", SHA, "ADD")),
     ("push", None, None, "bd6f2bb1-0cd4")),
    ("bitbucket", SERVER_PUSH, server_push(
        server_change("refs/heads/master", SHA),
        server_change("refs/heads/release/2", SERVER_HEAD, "ADD"),
        server_change("refs/tags/v1", SHA, "ADD")),
     ("push", None, None, "bd6f2bb1-0cd4")),
    ("bitbucket", {"x-event-key": "diagnostics:ping", "x-request-id": "p-1"}, b'{"test": true}',
     ("ping", None, None, "p-1")),
    ("bitbucket", {"x-event-key": "pr:opened"}, b"{}", ("other", None, None, None)),
    # generic
    ("generic", {}, b"", ("push", None, None, None)),
    ("generic", {"x-delivery-id": "run-7"}, b" \n", ("push", None, None, "run-7")),
    ("generic", {}, b"{}", ("push", None, None, None)),
    ("generic", {"x-delivery-id": "run-8"}, json.dumps({"ref": "refs/heads/main", "after": SHA}),
     ("push", "main", SHA, "run-8")),
    ("generic", {}, json.dumps({"branch": "main", "sha": SHA.upper()}),
     ("push", "main", SHA, None)),
    ("generic", {}, json.dumps({"branch": "refs/heads/main"}), ("push", "main", None, None)),
    ("generic", {}, json.dumps({"sha": SHA}), ("push", None, SHA, None)),
    ("generic", {}, json.dumps({"ref": "refs/tags/v1", "after": SHA}), ("push", None, None, None)),
    ("generic", {}, json.dumps({"branch": "main", "after": ZERO}), ("push", "main", None, None)),
    ("generic", {}, json.dumps({"branch": None, "sha": None}), ("push", None, None, None)),
    ("generic", {}, json.dumps({"branch": "main", "sha": "ab" * 32}),
     ("push", "main", "ab" * 32, None)),
]  # fmt: skip


@pytest.mark.parametrize(("provider", "headers", "body", "expected"), PARSED)
def test_parse(
    provider: str, headers: dict[str, str], body: bytes | str, expected: tuple[Any, ...]
) -> None:
    raw = body.encode() if isinstance(body, str) else body
    event, branch, sha, delivery_id = expected
    assert parse(provider, headers, raw) == Delivery(provider, event, branch, sha, delivery_id)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def without(name: str, *keys: str) -> bytes:
    data = json.loads((PAYLOADS / f"{name}.json").read_text())
    return json.dumps({k: v for k, v in data.items() if k not in keys}).encode()


def cloud_bad(change: object) -> bytes:
    return json.dumps({"push": {"changes": [change]}}).encode()


REFUSED = [
    ("github", GITHUB_PUSH, b'{"ref": "refs/heads/main",', "not valid JSON"),
    ("github", GITHUB_PUSH, b"", "not valid JSON"),
    ("github", GITHUB_PUSH, b"\x80\x81", "not valid JSON"),
    ("github", GITHUB_PUSH, nested(100_000), "not valid JSON"),
    ("github", GITHUB_PUSH, b"[]", "not a JSON object"),
    ("github", GITHUB_PUSH, without("github_push", "ref"), "missing field 'ref'"),
    ("github", GITHUB_PUSH, without("github_push", "after"), "missing field 'after'"),
    ("github", GITHUB_PUSH, payload("github_push", ref=42), "field 'ref' is not a string"),
    ("github", GITHUB_PUSH, payload("github_push", ref=None), "field 'ref' is not a string"),
    ("github", GITHUB_PUSH, payload("github_push", ref="refs/heads/"), "'ref' names no branch"),
    ("github", GITHUB_PUSH, payload("github_push", after="HEAD~1"), "'after' is not a commit id"),
    ("github", GITHUB_PUSH, payload("github_push", after="--upload-pack=x"), "'after'"),
    ("github", {"x-github-delivery": "d"}, payload("github_push"), "missing X-GitHub-Event"),
    ("github", {**GITHUB_PUSH, **FORM}, b"other=1", "no 'payload' field"),
    ("gitea", GITEA_PUSH, b"{", "not valid JSON"),
    ("gitea", GITEA_PUSH, without("gitea_push", "ref"), "missing field 'ref'"),
    ("gitea", {}, payload("gitea_push"), "missing X-Gitea-Event or X-Forgejo-Event"),
    ("forgejo", FORGEJO_PUSH, without("gitea_push", "after"), "missing field 'after'"),
    ("gitlab", GITLAB_PUSH, b"<html>", "not valid JSON"),
    ("gitlab", GITLAB_PUSH, without("gitlab_push", "ref"), "missing field 'ref'"),
    ("gitlab", {"x-gitlab-event": "System Hook"}, without("gitlab_system_push", "after"),
     "missing field 'after'"),
    ("bitbucket", {}, payload("bitbucket_cloud_push"), "missing X-Event-Key"),
    ("bitbucket", CLOUD_PUSH, b"{}", "missing field 'push'"),
    ("bitbucket", CLOUD_PUSH, b'{"push": {}}', "missing field 'push.changes'"),
    ("bitbucket", CLOUD_PUSH, b'{"push": {"changes": {}}}', "'push.changes' is not a list"),
    ("bitbucket", CLOUD_PUSH, cloud_bad(None), "'push.changes[0]' is not a JSON object"),
    ("bitbucket", CLOUD_PUSH, cloud_bad({"new": {"type": "branch", "name": "main"}}),
     "missing field 'push.changes[0].new.target'"),
    ("bitbucket", CLOUD_PUSH, cloud_bad({"new": {"type": "branch", "name": "m", "target": {}}}),
     "missing field 'push.changes[0].new.target.hash'"),
    ("bitbucket", CLOUD_PUSH, cloud_bad({"new": {"type": "branch", "target": {"hash": SHA}}}),
     "missing field 'push.changes[0].new.name'"),
    ("bitbucket", CLOUD_PUSH, cloud_bad({"new": None, "old": None}),
     "'push.changes[0].old' is not a JSON object"),
    ("bitbucket", SERVER_PUSH, b"{}", "missing field 'changes'"),
    ("bitbucket", SERVER_PUSH, server_push({"ref": {"displayId": "master"}, "toHash": SHA}),
     "missing field 'changes[0].ref.id'"),
    ("bitbucket", SERVER_PUSH, server_push(server_change("refs/heads/master", "tip")),
     "'changes[0].toHash' is not a commit id"),
    ("generic", {}, b"{", "not valid JSON"),
    ("generic", {}, b'"main"', "not a JSON object"),
    ("generic", {}, b'{"branch": 5}', "field 'branch' is not a string"),
    ("generic", {}, b'{"branch": " "}', "field 'branch' is empty"),
    ("generic", {}, b'{"ref": "refs/heads/"}', "'ref' names no branch"),
    ("generic", {}, b'{"sha": "nope"}', "field 'sha' is not a commit id"),
    ("generic", {}, b'{"after": 1234}', "field 'after' is not a string"),
]  # fmt: skip


@pytest.mark.parametrize(("provider", "headers", "body", "problem"), REFUSED)
def test_parse_refuses(provider: str, headers: dict[str, str], body: bytes, problem: str) -> None:
    error = refusal(lambda: parse(provider, headers, body))
    assert error.status == 400
    assert problem in error.message


PUSH_HEADERS = {
    "github": GITHUB_PUSH,
    "gitea": GITEA_PUSH,
    "forgejo": FORGEJO_PUSH,
    "gitlab": GITLAB_PUSH,
    "bitbucket": CLOUD_PUSH,
    "generic": {},
}
ODD_BODIES = [
    b"null", b"0", b"true", b'"x"', b"{}", b'{"ref": null, "after": null}',
    b'{"ref": [], "after": {}}', b'{"push": {"changes": [null, 1, "x"]}}',
    b'{"push": {"changes": [{"new": {"type": "branch", "name": 7, "target": 3}}]}}',
    b'{"changes": [{"ref": [], "toHash": null}]}', b'{"event_name": "push"}',
    b"\xef\xbb\xbf{}", b"\xff\xfe{\x00}\x00", b"NaN", b"1e999", b'{"a": "\\ud800"}',
]  # fmt: skip


@pytest.mark.parametrize("provider", PROVIDERS)
def test_odd_bodies_are_answered_or_refused_with_400(provider: str) -> None:
    noise = random.Random(provider)  # noqa: S311 -- reproducible noise, not a secret
    bodies = [*ODD_BODIES, *(noise.randbytes(noise.randrange(1, 200)) for _ in range(200))]
    headers: dict[str, str] = PUSH_HEADERS[provider]
    for events in (headers, {**SERVER_PUSH}) if provider == "bitbucket" else (headers,):
        for body in bodies:
            try:
                assert isinstance(parse(provider, events, body), Delivery)
            except WebhookError as error:
                assert error.status == 400, body
