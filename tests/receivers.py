"""Real receivers on loopback for notifications: an SMTP server (aiosmtpd) and an HTTP hook."""

from __future__ import annotations

import email
import email.policy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from lab.ports import LOOPBACK, free_port

USER = "agent"
PASSWORD = "s3cret-Pa55-w0rd"


# --- a real SMTP server ---


@dataclass
class Inbox:
    """aiosmtpd handler: keeps every mail and every AUTH mechanism it saw."""

    port: int = 0
    mails: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    mechanisms: list[str] = field(default_factory=list)
    unknown: tuple[str, ...] = ()  # recipients answered 550

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.unknown:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        self.mechanisms.append(mechanism)
        ok = isinstance(data, LoginPassword) and data == (USER.encode(), PASSWORD.encode())
        # handled=False: aiosmtpd then answers 535 itself (True would leave the client waiting).
        return AuthResult(success=ok, handled=False)

    def message(self, index: int = 0) -> EmailMessage:
        raw = self.mails[index][2]
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@contextmanager
def smtp_server(inbox: Inbox, **options: Any) -> Iterator[Inbox]:
    controller = Controller(inbox, hostname=LOOPBACK, port=inbox.port, **options)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with smtp_server(Inbox(port=free_port())) as box:
        yield box


# --- a real HTTP receiver ---


class Receiver(ThreadingHTTPServer):
    status = 200
    bodies: list[tuple[str, str, bytes]]


class _Hook(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self.server.bodies.append((self.path, self.headers.get("Content-Type", ""), body))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver((LOOPBACK, 0), _Hook)
    server.bodies = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def hook_url(server: Receiver) -> str:
    return f"http://{LOOPBACK}:{server.server_address[1]}/services/T0/B0/hook-token"
