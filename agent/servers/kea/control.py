"""Kea's control socket: one JSON command in, one JSON answer out, over a unix socket.

Kea answers in well under a millisecond (status-get, config-reload of a small
config) and closes the connection after its answer; the answer is read until
then, or until it parses, whichever comes first.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from agent.errors import RestartError

TIMEOUT = 30.0  # seconds: config-reload of 10,000 reservations is well inside
MAX_ANSWER = 64 * 1024 * 1024  # bytes: a config-get of a huge config, not more


def command(path: Path, name: str, arguments: Any = None, timeout: float = TIMEOUT) -> Any:
    """The answer's `arguments` when Kea says result 0 (success) or 3 (empty); else
    RestartError with Kea's text. A socket that does not answer is a RestartError too."""
    answer = ask(path, name, arguments, timeout)
    if not isinstance(answer, dict) or answer.get("result") not in (0, 3):
        text = answer.get("text") if isinstance(answer, dict) else answer
        raise RestartError(f"kea {name} failed: {text}")
    return answer.get("arguments")


def ask(path: Path, name: str, arguments: Any = None, timeout: float = TIMEOUT) -> Any:
    """Kea's raw answer to one command (a list for commands the agent forwards)."""
    message: dict[str, Any] = {"command": name}
    if arguments is not None:
        message["arguments"] = arguments
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(path))
            conn.sendall(json.dumps(message).encode())
            return _read_answer(conn, time.monotonic() + timeout)
    except OSError as err:
        raise RestartError(f"kea's control socket {path}: {err.strerror or err}") from err


def _read_answer(conn: socket.socket, deadline: float) -> Any:
    data = b""
    while len(data) < MAX_ANSWER and time.monotonic() < deadline:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        try:
            return json.loads(data)
        except ValueError:
            continue  # more to come
    try:
        return json.loads(data)
    except ValueError as err:
        raise RestartError(f"kea's control socket answered no JSON: {data[:200]!r}") from err
