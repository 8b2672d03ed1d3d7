"""Notifications against real servers on loopback: aiosmtpd for mail, http.server for hooks."""

from __future__ import annotations

import base64
import json
import logging
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import Notify
from agent.daemon import notify
from agent.daemon.notify import Event
from agent.engine.state import Attempt
from agent.errors import Problem
from lab.ports import LOOPBACK, free_port
from tests.receivers import PASSWORD, USER, Inbox, Receiver, hook_url, smtp_server

SHA = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b"
LIVE = "0f0e0d0c0b0a09080706050403020100ffeeddcc"
WRONG = "not-the-Pa55-w0rd"
LOG = "fetch: origin/main is 1a2b3c4d5e6f\nvalidate: dhcpd -t refused the staged tree\n"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # urllib honours *_proxy: keep every request on loopback whatever the CI sets.
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def event(result: str = "refused", log: str = LOG) -> Event:
    problem = Problem(
        file="/etc/dhcp/dhcpd.conf",
        line=12,
        message="semicolon expected.",
        context=("subnet 10.0.0.0 netmask 255.255.255.0 {", "  range 10.0.0.10 10.0.0.99"),
        source="dhcp/dhcpd.conf",
    )
    attempt = Attempt.model_validate(
        {
            "sha": SHA,
            "started_at": "2024-05-01T10:00:00+00:00",
            "finished_at": "2024-05-01T10:00:02+00:00",
            "result": result,
            "step": "validate" if result == "refused" else None,
            "message": "dhcpd -t refused the config; 0f0e0d0c0b0a stays live",
            "problems": [problem] if result == "refused" else [],
            "timings": {"fetch": 0.12, "render": 0.031, "validate": 0.2},
        }
    )
    return Event(
        node="dhcp1",
        role="primary",
        attempt=attempt,
        subject="Add printer",
        author="Alice <alice@example.net>",
        live_sha=SHA if result == "deployed" else LIVE,
        log=log,
    )


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, its own CA."""
    folder = tmp_path_factory.mktemp("tls")
    crt, key = folder / "server.crt", folder / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(crt)],
        check=True, capture_output=True,
    )  # fmt: skip
    return crt, key


def auth_server(cert: tuple[Path, Path], mechanism: str) -> Any:
    """STARTTLS required, AUTH required, only `mechanism` offered."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(*cert)
    inbox = Inbox(port=free_port())
    return smtp_server(
        inbox,
        tls_context=server_context,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        auth_exclude_mechanism=[m for m in ("LOGIN", "PLAIN") if m != mechanism],
        authenticator=inbox.authenticate,
    )


def client_context(cert: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert[0]))


def mail_cfg(port: int, **more: Any) -> Notify:
    return Notify(
        smtp_host=LOOPBACK,
        smtp_port=port,
        mail_from="dhcp-gitops@dhcp1.example.net",
        mail_to=("ops@example.net", "noc@example.net"),
        timeout=5.0,
        **more,
    )


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connecting is refused, and nobody can take it."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        yield int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (kernel backlog) and never says a word."""
    with socket.create_server((LOOPBACK, 0)) as sock:
        yield int(sock.getsockname()[1])


def assert_no_secret(*texts: str | bytes, secret: str = PASSWORD) -> None:
    for value in texts:
        raw = value if isinstance(value, bytes) else value.encode()
        assert secret.encode() not in raw
        assert base64.b64encode(secret.encode()) not in raw


def _ours(record: logging.LogRecord) -> bool:
    return record.name.startswith("agent.")


# --- the summary ---


def test_text_names_result_commit_live_tree_problems_and_timings() -> None:
    summary = notify.text(event())
    assert summary.splitlines()[0] == 'dhcp1 (primary): refused 1a2b3c4d5e6f "Add printer"'
    assert "result:   refused at step validate" in summary
    assert f'commit:   {SHA} "Add printer" by Alice <alice@example.net>' in summary
    assert "live now: 0f0e0d0c0b0a (not this commit)" in summary
    assert "  dhcp/dhcpd.conf:12: semicolon expected." in summary
    assert "      | subnet 10.0.0.0 netmask 255.255.255.0 {" in summary
    assert "timings:  fetch 0.12s, render 0.03s, validate 0.20s" in summary


def test_text_of_a_deploy_without_commit_details() -> None:
    base = event("rolled_back")
    bare = Event(
        node="dhcp2", role="secondary", attempt=base.attempt, subject=None, author=None,
        live_sha=None, log="",
    )  # fmt: skip
    summary = notify.text(bare)
    assert summary.splitlines()[0] == "dhcp2 (secondary): rolled back 1a2b3c4d5e6f"
    assert "live now: nothing deployed by dhcp-gitops yet" in summary
    assert "problems:" not in summary
    assert "live now: 1a2b3c4d5e6f (this commit)" in notify.text(event("deployed"))


# --- smtp ---


def test_refused_attempt_is_mailed_with_problems_and_log(inbox: Inbox) -> None:
    assert notify.send(mail_cfg(inbox.port), event()) == []

    [(sender, recipients, _)] = inbox.mails
    assert sender == "dhcp-gitops@dhcp1.example.net"
    assert recipients == ["ops@example.net", "noc@example.net"]
    mail = inbox.message()
    assert mail["Subject"] == '[dhcp-gitops] dhcp1 (primary): refused 1a2b3c4d5e6f "Add printer"'
    assert mail["To"] == "ops@example.net, noc@example.net"
    body = mail.get_content().replace("\r\n", "\n")
    assert "dhcp/dhcpd.conf:12: semicolon expected." in body
    assert "      | subnet 10.0.0.0 netmask 255.255.255.0 {" in body
    summary, log = body.split("\n--- log ---\n")
    assert summary.strip() == notify.text(event())
    assert log == LOG


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_starttls_and_login_deliver(
    cert: tuple[Path, Path], mechanism: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with auth_server(cert, mechanism) as box:
        cfg = mail_cfg(box.port, smtp_starttls=True, smtp_user=USER)
        failures = notify.send(cfg, event(), PASSWORD, ssl_context=client_context(cert))

    assert failures == []
    assert box.mechanisms == [mechanism]
    assert len(box.mails) == 1
    assert_no_secret(box.mails[0][2])
    assert_no_secret(*(record.getMessage() for record in caplog.records if _ours(record)))
    # The server's own debug log quotes the AUTH exchange (base64), never the password.
    assert all(PASSWORD not in record.getMessage() for record in caplog.records)


def test_wrong_password_is_a_failure_line_without_the_password(
    cert: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with auth_server(cert, "PLAIN") as box:
        cfg = mail_cfg(box.port, smtp_starttls=True, smtp_user=USER)
        failures = notify.send(cfg, event(), WRONG, ssl_context=client_context(cert))

    assert box.mails == []
    [line] = failures
    assert line.startswith(f"smtp: {LOOPBACK}:{box.port}: login refused: 535")
    assert_no_secret(line, secret=WRONG)
    assert all(WRONG not in record.getMessage() for record in caplog.records)
    assert line in caplog.text  # logged once, as the caller gets it


def test_untrusted_certificate_is_refused(cert: tuple[Path, Path]) -> None:
    with auth_server(cert, "PLAIN") as box:
        cfg = mail_cfg(box.port, smtp_starttls=True, smtp_user=USER)
        [line] = notify.send(cfg, event(), PASSWORD)  # system CAs do not know our cert

    assert ": TLS: " in line and "self" in line  # OpenSSL: "self-signed certificate"
    assert box.mechanisms == []  # the password was never offered
    assert_no_secret(line)


def test_refused_recipients_are_a_failure_line(inbox: Inbox) -> None:
    inbox.unknown = ("noc@example.net",)
    [line] = notify.send(mail_cfg(inbox.port), event())
    assert line.endswith(": recipients refused: noc@example.net (550 5.1.1 no such user)")
    assert [rcpt for _, rcpt, _ in inbox.mails] == [["ops@example.net"]]

    inbox.unknown = ("ops@example.net", "noc@example.net")
    [line] = notify.send(mail_cfg(inbox.port), event())
    assert "recipients refused: ops@example.net (550" in line
    assert len(inbox.mails) == 1


def test_password_is_never_sent_in_clear(inbox: Inbox) -> None:
    cfg = mail_cfg(inbox.port, smtp_user=USER)
    [line] = notify.send(cfg, event(), PASSWORD)
    assert "smtp_starttls" in line
    assert inbox.mails == []


def test_password_that_leaks_into_the_log_is_redacted(
    inbox: Inbox, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = mail_cfg(inbox.port, webhook_url=hook_url(receiver))
    leaky = event(log=f"{LOG}git: url has password {PASSWORD}\n")

    assert notify.send(cfg, leaky, PASSWORD) == []

    body = inbox.message().get_content()
    assert notify.REDACTED in body
    assert_no_secret(inbox.mails[0][2], body, receiver.bodies[0][2], caplog.text)


# --- which results are sent ---


def test_results_not_in_on_send_nothing(inbox: Inbox, receiver: Receiver) -> None:
    cfg = mail_cfg(inbox.port, on=["refused", "failed"], webhook_url=hook_url(receiver))
    assert notify.send(cfg, event("current")) == []
    assert notify.send(cfg, event("deployed")) == []
    assert inbox.mails == []
    assert receiver.bodies == []


# --- webhook ---


def test_webhook_receives_slack_compatible_json(receiver: Receiver) -> None:
    cfg = Notify(webhook_url=hook_url(receiver), timeout=5.0)
    assert notify.send(cfg, event(), PASSWORD) == []

    [(path, content_type, raw)] = receiver.bodies
    assert path == "/services/T0/B0/hook-token"
    assert content_type == "application/json"
    body = json.loads(raw)
    assert body == {
        "text": notify.text(event()),
        "node": "dhcp1",
        "role": "primary",
        "result": "refused",
        "sha": SHA,
        "step": "validate",
        "problems": ["dhcp/dhcpd.conf:12: semicolon expected."],
        "live_sha": LIVE,
    }


def test_webhook_answering_500_is_a_failure_line(receiver: Receiver) -> None:
    receiver.status = 500
    cfg = Notify(webhook_url=hook_url(receiver), timeout=5.0)
    [line] = notify.send(cfg, event(), PASSWORD)
    port = receiver.server_address[1]
    assert line == f"webhook: http://{LOOPBACK}:{port}: answered 500 Internal Server Error"
    assert "hook-token" not in line  # a hook's path is its secret


def test_webhook_redirect_is_a_failure_line(receiver: Receiver) -> None:
    receiver.status = 302  # urllib would re-send it as a GET without the body
    cfg = Notify(webhook_url=hook_url(receiver), timeout=5.0)
    [line] = notify.send(cfg, event())
    assert "answered 302" in line
    assert len(receiver.bodies) == 1


# --- dead servers never stop a deploy ---


def test_unreachable_servers_give_failure_lines(closed_port: int) -> None:
    cfg = mail_cfg(closed_port, webhook_url=f"http://{LOOPBACK}:{closed_port}/hook")
    assert notify.send(cfg, event(), PASSWORD) == [
        f"smtp: {LOOPBACK}:{closed_port}: Connection refused",
        f"webhook: http://{LOOPBACK}:{closed_port}: Connection refused",
    ]


def test_silent_servers_time_out(silent_port: int) -> None:
    cfg = mail_cfg(silent_port, webhook_url=f"http://{LOOPBACK}:{silent_port}/hook")
    cfg = cfg.model_copy(update={"timeout": 0.3})
    start = time.monotonic()
    failures = notify.send(cfg, event(), PASSWORD)
    assert failures == [
        f"smtp: {LOOPBACK}:{silent_port}: timed out",
        f"webhook: http://{LOOPBACK}:{silent_port}: timed out",
    ]
    assert time.monotonic() - start < 3


def test_unusable_settings_give_failure_lines() -> None:
    cfg = Notify(smtp_host=LOOPBACK, smtp_user=USER, smtp_starttls=True, webhook_url="file:///x")
    assert notify.send(cfg, event()) == [
        f"smtp: {LOOPBACK}:25: mail_to is empty",
        "webhook: file://: webhook_url must be an http:// or https:// URL",
    ]
