"""A fake peer agent: a real HTTP server on 127.0.0.1 answering GET /status as told.

For the answers no real agent gives: a document of the wrong shape, one cut short
or too large, an answer that comes too late or a byte at a time. The documents it
starts from are real ones (tests/payloads/status_v1_*.json, captured from the
agent before the status model), changed field by field.
"""

from __future__ import annotations

import contextlib
import copy
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PAYLOADS = Path(__file__).with_name("payloads")
SHA, OLD = "a" * 40, "b" * 40


def v1_document(name: str = "primary") -> dict[str, Any]:
    """A /status document as the agent before the status model answered it."""
    doc: dict[str, Any] = json.loads((PAYLOADS / f"status_v1_{name}.json").read_text())
    return doc


def peer_document(
    state: str = "idle",
    deployed: str | None = OLD,
    running: bool | None = True,
    last: tuple[str, str] | None = None,
    working_on: str | None = None,
    saw_us_run: str | None = None,
) -> dict[str, Any]:
    """A peer's document: its state, deployed commit, dhcpd, last attempt (sha, result),
    the commit it works on, and the commit it last saw us run (its peer section)."""
    doc = v1_document()
    doc["state"], doc["working_on"] = state, working_on
    doc["deployed"] = {**doc["deployed"], "sha": deployed} if deployed else None
    doc["dhcpd"] = {"mode": "supervise", "running": running, "pid": 1, "unexpected_restarts": 0}
    if running is None:
        doc["dhcpd"] = {"mode": "none"}
    doc["last_attempt"] = {**doc["last_attempt"], "sha": last[0], "result": last[1]} if last \
        else None  # fmt: skip
    doc["peer"] = {**doc["peer"], "deployed_sha": saw_us_run}
    doc["server_time_unix"] = time.time()
    return doc


@dataclass
class Answer:
    """What the fake peer answers next: a body, its code, and how slowly."""

    body: bytes
    code: int = 200
    delay: float = 0.0  # seconds before the status line
    drip: float = 0.0  # seconds between two bytes of the body
    length: bool = True  # send Content-Length (else the body ends with the connection)

    @classmethod
    def of(cls, doc: Any, **how: Any) -> Answer:
        return cls(json.dumps(doc).encode(), **how)


class FakePeer:
    """Serves `answer` on 127.0.0.1 until closed (a context manager); counts requests."""

    def __init__(self, answer: Answer | None = None) -> None:
        answer = answer or Answer.of(peer_document())
        self.answer = answer
        self.requests = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)  # fmt: skip
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/status"

    def serve(self, doc: Any, **how: Any) -> None:
        self.answer = Answer.of(doc, **how)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakePeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _handler(peer: FakePeer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            peer.requests += 1
            answer = copy.copy(peer.answer)
            time.sleep(answer.delay)
            self.send_response(answer.code)
            self.send_header("Content-Type", "application/json")
            if answer.length:
                self.send_header("Content-Length", str(len(answer.body)))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            with contextlib.suppress(OSError):  # the client gave up: what a slow peer is for
                self._write(answer)

        def _write(self, answer: Answer) -> None:
            if not answer.drip:
                self.wfile.write(answer.body)
                return
            for i in range(len(answer.body)):
                self.wfile.write(answer.body[i : i + 1])
                self.wfile.flush()
                time.sleep(answer.drip)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
