"""The agent's log on stderr: text or JSON lines, with levels journald reads.

    text  2026-05-01 10:00:00,123 INFO agent.daemon.loop: deployed 1a2b3c4d5e6f "Add host"
    json  {"time": "2026-05-01T10:00:00.123+00:00", "level": "info",
           "logger": "agent.daemon.loop", "message": "deployed ...", "sha": "1a2b...",
           "result": "deployed"}

A JSON line carries the `extra` fields its call gave (sha, result, step, ...).
When stderr is the journal's stream (systemd sets JOURNAL_STREAM to it), every
line starts with its syslog priority, `<6>` for info: journald files the entry
under that level and strips the prefix, and stamps the time itself.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any, Literal

from agent.errors import DhcpGitopsError

Format = Literal["text", "json"]

TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_TEXT = "%(levelname)s %(name)s: %(message)s"  # journald stamps the time
# sd-daemon(3) priorities; a level between two takes the more urgent one.
PRIORITIES = ((logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))
DEBUG_PRIORITY = 7
# A LogRecord's own attributes: the rest of its __dict__ came from `extra`.
_STANDARD = {*vars(logging.makeLogRecord({})), "message", "asctime", "color_message"}


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so that configure() can tell it from a handler someone else installed."""


def configure(format: Format = "text", level: int = logging.WARNING) -> None:
    """Send the log to stderr in `format`, from `level` up. As logging.basicConfig, it
    leaves a log that someone else set up (a test runner, a host program) alone."""
    root = logging.getLogger()
    if any(not isinstance(h, _Handler) for h in root.handlers):
        return
    for old in root.handlers[:]:
        root.removeHandler(old)
    handler = _Handler(sys.stderr)
    journal = on_journal()
    handler.setFormatter(JsonFormatter(journal) if format == "json" else TextFormatter(journal))
    root.addHandler(handler)
    root.setLevel(level)


def on_journal() -> bool:
    """stderr is the journal's stream: systemd says so in JOURNAL_STREAM (device:inode)."""
    stream = os.environ.get("JOURNAL_STREAM")
    if not stream:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):  # no stderr at all
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def priority(level: int) -> int:
    return next((p for at, p in PRIORITIES if level >= at), DEBUG_PRIORITY)


def _prefixed(text: str, level: int) -> str:
    """Every line, a traceback's too: journald reads each line as an entry of its own."""
    mark = f"<{priority(level)}>"
    return "\n".join(mark + line for line in text.split("\n"))


class TextFormatter(logging.Formatter):
    def __init__(self, journal: bool = False) -> None:
        super().__init__(JOURNAL_TEXT if journal else TEXT)
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return _prefixed(text, record.levelno) if self.journal else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the extra fields."""

    def __init__(self, journal: bool = False) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        doc.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        line = json.dumps(doc, default=str, ensure_ascii=False)
        return f"<{priority(record.levelno)}>{line}" if self.journal else line


def one_line(err: BaseException) -> str:
    """Any error as the one line a user reads: ours by its message, the system's by its
    strerror and file, anything else (a bug) by its type."""
    if isinstance(err, DhcpGitopsError):
        return err.message
    if isinstance(err, OSError) and err.strerror:
        return f"{err.strerror} ({err.filename})" if err.filename else err.strerror
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class Throttle:
    """At most one log line per `every` seconds for a fault that repeats: EMFILE on
    accept() comes thousands of times a second. The line after a quiet spell says how
    many were held back."""

    def __init__(self, logger: logging.Logger, every: float, level: int = logging.WARNING):
        self.logger = logger
        self.every = every
        self.level = level
        self._held = 0
        self._next = 0.0
        self._lock = threading.Lock()

    def __call__(self, message: str, **extra: Any) -> None:
        with self._lock:
            now = time.monotonic()
            if now < self._next:
                self._held += 1
                return
            held, self._held, self._next = self._held, 0, now + self.every
        also = f" (and {held} more like it since the last such line)" if held else ""
        self.logger.log(self.level, "%s%s", message, also, extra={"repeats": held, **extra})
