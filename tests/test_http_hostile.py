"""The HTTP API under hostile input, against a real `dhcp-gitops agent` on 127.0.0.1.

schemathesis generates requests from the agent's own /openapi.json (well over
1,000 of them) and every answer must be no 5xx and what the document declares.
A share of the generated requests carry a valid signature or token, computed
over the exact bytes sent, so the code behind the checks is fuzzed too. Then,
by hand: bodies too large (declared or chunked), too slow (a byte at a time),
of the wrong content type, replayed deliveries, and the constant-time
comparison behind every signature and token check.

Why a real uvicorn and not the ASGI app in-process: body limits and deadlines
are about what arrives over a socket (Content-Length, chunked encoding, a
client that stalls), which an in-process transport hands over at once. Over
loopback, one request costs about a millisecond more than in-process: the
fuzzing stays well under a minute on two shared cores.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import CheckFunction
from schemathesis.core.result import Err
from schemathesis.specs.openapi import checks as openapi_checks

from agent.review.template import template_dir
from lab.agent import TOKEN, AgentProcess, launch
from lab.forge import PUSH_EVENTS, SECRET, SIGNERS, push_payload, signed_headers
from lab.ports import free_port
from lab.repo import ConfigRepo
from lab.toml import toml_text
from tests.conftest import StartAgent
from webhook import credentials, forges
from webhook.app import require_token
from webhook.signatures import WebhookError

MAX_BODY = 64 * 1024
BODY_TIMEOUT = 3.0  # seconds; short, so that the slow-body tests end soon
MIN_CASES = 1000
# hypothesis examples per operation; those with few inputs end sooner on their own.
BUDGET = {
    "POST /webhook/{provider}": 800,
    "POST /sync": 150,
    "GET /history": 150,
    "GET /status": 25,
    "GET /healthz": 25,
    "GET /metrics": 25,
}
CHECKS: list[CheckFunction] = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.ignored_auth,
]


# --- the agent under test --------------------------------------------------------------


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, dhcpd_binary: str) -> Iterator[AgentProcess]:
    """One agent for the module: the example pair deployed, webhooks and /sync on."""
    home = tmp_path_factory.mktemp("hostile")
    repo = ConfigRepo(home / "repo", template_dir())
    repo.commit("Initial pair config")
    (home / "etc").mkdir()
    (home / "secret").write_text(SECRET + "\n")
    (home / "token").write_text(TOKEN + "\n")
    port = free_port()
    config = home / "agent.toml"
    config.write_text(
        toml_text({
            "node": {"name": "dhcp1", "role": "primary"},
            "source": {"url": repo.url, "poll_interval": 0},
            "deploy": {"target": str(home / "etc" / "dhcp"), "state_dir": str(home / "state")},
            "dhcpd": {"restart": "none", "lease_file": str(home / "dhcpd.leases"),
                      "health_timeout": 0.2},
            "http": {"listen": f"127.0.0.1:{port}", "webhook_secret_file": str(home / "secret"),
                     "token_file": str(home / "token"), "max_body": MAX_BODY,
                     "body_timeout": BODY_TIMEOUT},
        })
    )  # fmt: skip
    started = launch(config, port, home / "agent.log")
    try:
        started.wait_for(lambda d: d["deployed"] is not None)
        yield started
    finally:
        started.stop()


def port_of(agent: AgentProcess) -> int:
    return int(agent.url.rsplit(":", 1)[1])


# --- proofs: a signature or token over the exact bytes sent ----------------------------

# What a generated request carries: as generated, a valid proof, a valid proof on a
# push event (the payload parsers run), or a wrong one.
PROOFS = ("as generated", "valid", "valid push", "wrong")


def body_sent(request: requests.PreparedRequest) -> bytes:
    body = request.body
    if isinstance(body, str):  # a form, already URL-encoded: ASCII
        return body.encode()
    return body if isinstance(body, bytes) else b""


def prove(request: requests.PreparedRequest, provider: str | None, proof: str) -> dict[str, str]:
    """Sign (or mis-sign) the prepared request: /sync gets a bearer token. The headers set."""
    if proof == "as generated":
        return {}
    secret = SECRET if proof.startswith("valid") else "not-the-secret"
    if provider is None:
        added = {"Authorization": "Bearer " + (TOKEN if secret == SECRET else secret)}
    elif provider in SIGNERS:
        added = signed_headers(provider, body_sent(request), secret)
        if proof == "valid push" and provider in PUSH_EVENTS:
            added.update([PUSH_EVENTS[provider]])
    else:
        added = {}  # an unknown provider: nothing to sign for, 404 whatever the headers
    request.headers.update(added)
    return added


# --- schemathesis ----------------------------------------------------------------------


class Fuzzer:
    """Sends schemathesis' cases over a real socket, each with a drawn proof, and checks them."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.trust_env = False  # loopback only, whatever proxy the CI sets
        self.sent: Counter[str] = Counter()
        self.codes: Counter[int] = Counter()

    def run(self, operation: Any, budget: int) -> None:
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @settings(
            max_examples=budget,
            deadline=None,
            database=None,
            phases=[Phase.generate, Phase.target, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases, proof=st.sampled_from(PROOFS))
        def one(case: Any, proof: str) -> None:
            response, added = self.send(case, proof)
            self.sent[case.operation.label] += 1
            self.codes[response.status_code] += 1
            # `headers`: what we added, so that the auth check knows a real token when it sees one.
            case.validate_response(response, checks=CHECKS, headers=added)

        one()

    def send(self, case: Any, proof: str) -> tuple[requests.Response, dict[str, str]]:
        kwargs = case.as_transport_kwargs(base_url=self.base_url)
        fields = ("method", "url", "headers", "params", "cookies", "data", "json", "files")
        request = requests.Request(**{k: kwargs[k] for k in fields if k in kwargs}).prepare()
        provider = (case.path_parameters or {}).get("provider")
        added = prove(request, provider if case.operation.path != "/sync" else None, proof)
        return self.session.send(request, timeout=30), added


def test_generated_requests_get_no_5xx_and_declared_answers(agent: AgentProcess) -> None:
    schema = schemathesis.openapi.from_url(agent.url + "/openapi.json")
    fuzzer = Fuzzer(agent.url)
    started = time.monotonic()
    labels = []
    for result in schema.get_all_operations():
        assert not isinstance(result, Err), result.err()
        operation = result.ok()
        labels.append(operation.label)
        fuzzer.run(operation, BUDGET[operation.label])
    took = time.monotonic() - started
    total = sum(fuzzer.sent.values())
    print(f"\nschemathesis: {total} cases in {took:.1f} s: {dict(fuzzer.sent)}")
    print(f"answers: {dict(sorted(fuzzer.codes.items()))}")
    assert sorted(labels) == sorted(BUDGET), "an operation without a budget"
    assert total >= MIN_CASES
    # The proofs did their job: requests got past the checks and were parsed.
    assert {202, 400, 401, 403, 404} <= set(fuzzer.codes), fuzzer.codes
    assert agent.proc.poll() is None
    assert "Traceback" not in agent.output()


# --- bodies too large --------------------------------------------------------------------


def raw_connection(agent: AgentProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port_of(agent)), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request_head(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


def status_line(sock: socket.socket) -> str:
    """The response's first line; '' if the server closed without answering."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode("latin-1")


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (bounded by the socket's timeout)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_declared_length_over_max_body_is_refused_before_the_body(
    agent: AgentProcess,
) -> None:
    with raw_connection(agent) as sock:
        sock.sendall(
            request_head("/webhook/github", f"Content-Length: {100 * MAX_BODY}",
                         "Content-Type: application/json", "X-GitHub-Event: push")
        )  # fmt: skip
        assert status_line(sock) == "HTTP/1.1 413 Request Entity Too Large"


def test_a_chunked_body_is_refused_as_soon_as_it_passes_max_body(agent: AgentProcess) -> None:
    """No Content-Length: the body is counted as it arrives, never read to its end."""
    chunk = b"x" * 8192
    with raw_connection(agent) as sock:
        sock.sendall(request_head("/webhook/generic", "Transfer-Encoding: chunked"))
        for _ in range(2 * MAX_BODY // len(chunk)):  # twice the limit, and no last chunk
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        answer = status_line(sock)
    assert answer == "HTTP/1.1 413 Request Entity Too Large"


def test_a_body_at_the_limit_is_read(agent: AgentProcess) -> None:
    body = json.dumps({"pad": "x" * (MAX_BODY - 20)}).encode()
    assert len(body) <= MAX_BODY
    answer = httpx.post(
        agent.url + "/webhook/generic", content=body, trust_env=False,
        headers={"Content-Type": "application/json", **signed_headers("generic", body)},
    )  # fmt: skip
    assert answer.status_code in (200, 202), answer.text


# --- bodies too slow ---------------------------------------------------------------------


def start_slow_body(agent: AgentProcess, path: str = "/webhook/github") -> socket.socket:
    """A request whose headers promise 100 bytes, of which one is sent."""
    sock = raw_connection(agent)
    sock.sendall(request_head(path, "Content-Length: 100", "Content-Type: application/json"))
    sock.sendall(b"{")
    return sock


def dribble_until_answered(sock: socket.socket, most: int) -> bytes:
    """Send one more byte a second until the server answers or closes; what it said."""
    sock.settimeout(1.0)
    for _ in range(most):
        with contextlib.suppress(TimeoutError):
            return read_all(sock)
        with contextlib.suppress(OSError):  # the server may have closed between two bytes
            sock.sendall(b" ")
    pytest.fail(f"no answer after {most} bytes sent a second apart")


def test_a_body_sent_a_byte_a_second_gets_408_and_the_connection_closed(
    agent: AgentProcess,
) -> None:
    with start_slow_body(agent) as sock:
        said = dribble_until_answered(sock, most=int(BODY_TIMEOUT) * 4)
    assert said.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), said[:200]
    assert b"connection: close" in said.lower()
    assert b"not received within" in said


def test_slow_bodies_hold_up_nobody_else(agent: AgentProcess) -> None:
    """Twenty stalled bodies, and meanwhile the read endpoints and a webhook answer."""
    slow = [start_slow_body(agent) for _ in range(20)]
    try:
        with httpx.Client(base_url=agent.url, timeout=BODY_TIMEOUT, trust_env=False) as client:
            for path in ("/status", "/healthz", "/metrics", "/history"):
                assert client.get(path).status_code == 200, path
            body = push_payload("f" * 40, branch="elsewhere")
            headers = {"X-GitHub-Event": "push", **signed_headers("github", body)}
            answer = client.post("/webhook/github", content=body, headers=headers)
            assert answer.status_code == 200 and "ignored" in answer.json()["status"]
        for sock in slow:  # still waiting for their bodies: they were held, not dropped
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
        for sock in slow:
            sock.setblocking(True)
            sock.settimeout(4 * BODY_TIMEOUT)
            assert status_line(sock) == "HTTP/1.1 408 Request Timeout"
    finally:
        for sock in slow:
            sock.close()
    assert "Traceback" not in agent.output()


def test_a_client_that_vanishes_mid_body_is_no_error(agent: AgentProcess) -> None:
    with start_slow_body(agent):
        pass  # closed with 99 bytes owed
    with httpx.Client(base_url=agent.url, timeout=10, trust_env=False) as client:
        assert client.get("/healthz").status_code == 200
    assert "Traceback" not in agent.output() and "ERROR" not in agent.output()


# --- content types -----------------------------------------------------------------------

CONTENT_TYPES = [
    # (Content-Type, body as sent, answer when signed)
    ("application/json", push_payload("a" * 40, "elsewhere"), 200),
    ("application/json; charset=utf-8", push_payload("a" * 40, "elsewhere"), 200),
    ("text/plain", push_payload("a" * 40, "elsewhere"), 200),  # signed bytes are what count
    (None, push_payload("a" * 40, "elsewhere"), 200),
    ("application/x-www-form-urlencoded",
     b"payload=" + push_payload("a" * 40, "elsewhere").replace(b" ", b"+"), 200),
    ("application/x-www-form-urlencoded", b"ref=refs%2Fheads%2Fmain", 400),  # no payload field
    ("application/x-www-form-urlencoded", push_payload("a" * 40, "elsewhere"), 400),
    ("multipart/form-data; boundary=x",
     b'--x\r\nContent-Disposition: form-data; name="payload"\r\n\r\n{}\r\n--x--\r\n', 400),
    ("application/octet-stream", b"\x00\x01\x02\xff", 400),
]  # fmt: skip


@pytest.mark.parametrize(("content_type", "body", "signed_code"), CONTENT_TYPES)
def test_content_types(
    agent: AgentProcess, content_type: str | None, body: bytes, signed_code: int
) -> None:
    """Any type, the signature is checked first on the raw bytes; then JSON or a form's payload."""
    base = {"X-GitHub-Event": "push"} | ({"Content-Type": content_type} if content_type else {})
    with httpx.Client(base_url=agent.url, timeout=10, trust_env=False) as client:
        unsigned = client.post("/webhook/github", content=body, headers=base)
        signed = client.post(
            "/webhook/github", content=body, headers=base | signed_headers("github", body)
        )
    assert unsigned.status_code == 401
    assert signed.status_code == signed_code, signed.text
    assert signed.headers["content-type"] == "application/json"


# --- replays ---------------------------------------------------------------------------


def test_a_replayed_delivery_is_answered_and_triggers_nothing(
    repo: ConfigRepo, start_agent: StartAgent
) -> None:
    agent = start_agent()
    agent.wait_for(lambda d: d["deployed"] is not None and d["state"] == "idle")
    repo.write("dhcp/hosts.conf", repo.read("dhcp/hosts.conf") + "# replayed\n")
    first = repo.commit("Replayed")
    body = push_payload(first)
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "delivery-1",
               "Content-Type": "application/json", **signed_headers("github", body)}  # fmt: skip
    assert agent.client.post("/webhook/github", content=body, headers=headers).status_code == 202
    agent.wait_deployed(first)
    for _ in range(3):  # a forge's redelivery, or someone replaying a captured request
        again = agent.client.post("/webhook/github", content=body, headers=headers)
        assert (again.status_code, again.json()) == (200, {"status": "duplicate delivery ignored"})
    # The same id from another provider is another delivery.
    gitea = {"X-Gitea-Event": "push", "X-Gitea-Delivery": "delivery-1",
             **signed_headers("gitea", body)}  # fmt: skip
    repo.write("dhcp/hosts.conf", repo.read("dhcp/hosts.conf") + "# after\n")
    second = repo.commit("After the replay")
    answer = agent.client.post("/webhook/gitea", content=body, headers=gitea)
    assert (answer.status_code, answer.json()) == (202, {"status": "queued"})  # none pending
    agent.wait_deployed(second)
    # Each replay would have logged a reconcile of its own before the one of `second`.
    reasons = [line for line in agent.output().splitlines() if "reconcile (github webhook" in line]
    assert len(reasons) == 1, reasons
    metrics = agent.client.get("/metrics").text
    assert 'dhcp_gitops_webhooks_total{outcome="ignored",provider="github"} 3.0' in metrics


# --- constant-time comparisons ---------------------------------------------------------


@pytest.fixture
def comparisons(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    """Every hmac.compare_digest call, with its arguments (the real one still decides)."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    return calls


def proofs_to_try(provider: str, body: bytes) -> list[tuple[str, bool]]:
    """(header value, accepted?): right, wrong secret, a prefix, too long, one digit off."""
    _, sign = SIGNERS[provider]
    right = sign(body, SECRET)
    return [
        (right, True),
        (sign(body, "another secret"), False),
        (right[: len(right) // 2], False),
        (right + "00", False),
        (right[:-1] + ("0" if right[-1] != "0" else "1"), False),
        ("x", False),
    ]


@pytest.mark.parametrize("provider", forges.PROVIDERS)
def test_every_signature_check_is_one_compare_digest_on_equal_lengths(
    provider: str, comparisons: list[tuple[bytes, bytes]]
) -> None:
    body = push_payload("b" * 40)
    header, _ = SIGNERS[provider]
    for value, accepted in proofs_to_try(provider, body):
        comparisons.clear()
        try:
            forges.check_signature(provider, {header.lower(): value}, body, SECRET.encode())
            passed = True
        except WebhookError as error:
            assert error.status == 403
            passed = False
        assert passed == accepted, value
        [(given, expected)] = comparisons  # exactly one comparison decided it
        assert isinstance(given, bytes) and isinstance(expected, bytes)
        assert len(given) == len(expected) == hashlib.sha256().digest_size


@pytest.mark.parametrize(
    ("token", "accepted"),
    [(TOKEN, True), (TOKEN[:-1], False), (TOKEN + "x", False), ("t", False), ("x" * 500, False)],
)
def test_the_token_check_is_one_compare_digest_on_equal_lengths(
    token: str, accepted: bool, comparisons: list[tuple[bytes, bytes]]
) -> None:
    try:
        require_token(TOKEN.encode(), f"Bearer {token}")
        passed = True
    except Exception as error:  # noqa: BLE001 -- FastAPI's HTTPException, checked below
        assert getattr(error, "status_code", None) == 403
        passed = False
    assert passed == accepted
    [(given, expected)] = comparisons
    assert len(given) == len(expected) == hashlib.sha256().digest_size


def test_same_compares_digests_not_the_values() -> None:
    assert credentials.same(b"secret", b"secret")
    assert not credentials.same(b"secret", b"secret ")
    assert not credentials.same(b"", b"secret")


# --- the document itself -----------------------------------------------------------------


def test_the_document_declares_headers_body_and_auth(agent: AgentProcess) -> None:
    doc = agent.client.get("/openapi.json").json()
    hook = doc["paths"]["/webhook/{provider}"]["post"]
    names = {p["name"] for p in hook["parameters"]}
    assert {"X-Hub-Signature-256", "X-Gitlab-Token", "X-Signature", "X-GitHub-Delivery"} <= names
    provider = next(p for p in hook["parameters"] if p["name"] == "provider")
    assert provider["schema"]["enum"] == list(forges.PROVIDERS)
    assert set(hook["requestBody"]["content"]) == {
        "application/json", "application/x-www-form-urlencoded",
    }  # fmt: skip
    assert {"200", "202", "400", "401", "403", "404", "408", "413"} <= set(hook["responses"])
    assert doc["paths"]["/sync"]["post"]["security"] == [{"HTTPBearer": []}]


def test_a_validation_error_does_not_echo_the_input(agent: AgentProcess) -> None:
    answer = agent.client.get("/history", params={"limit": TOKEN})
    assert answer.status_code == 422
    assert TOKEN not in answer.text and answer.json()["detail"][0]["loc"] == ["query", "limit"]
