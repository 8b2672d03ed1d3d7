"""Tell people what a deploy attempt did: one mail and one JSON webhook per attempt.

Notifications are best effort. send() never raises: a dead mail server or chat
hook must never stop a deploy, so each channel that fails comes back as one line
("smtp: ...", "webhook: ...") for the caller to record.

The SMTP password is handed in by the caller (secrets are read once, at start).
It is used for AUTH only and scrubbed from everything this module produces: the
mail, the JSON body, the failure lines and its log records.
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from agent.config import Notify
from agent.engine.state import Attempt
from agent.errors import Problem

log = logging.getLogger(__name__)

SHORT_SHA = 12
REDACTED = "********"


@dataclass(frozen=True)
class Event:
    """One finished attempt, with what the caller knows around it."""

    node: str
    role: str
    attempt: Attempt
    subject: str | None  # commit subject, if known
    author: str | None
    live_sha: str | None  # what is live after the attempt
    log: str  # the reconcile's log lines, mailed below the summary


class _NotSent(Exception):
    """A channel we decline to use as configured; the message says why."""


def send(
    cfg: Notify,
    event: Event,
    password: str | None = None,
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> list[str]:
    """Deliver `event` to every configured channel if its result is in cfg.on.

    Returns one line per failed channel; never raises. `ssl_context` verifies the
    STARTTLS server (default: ssl.create_default_context(), the system CAs, which
    also honours SSL_CERT_FILE); tests pass one that trusts their own CA.
    """
    if event.attempt.result not in cfg.on:
        return []
    failures: list[str] = []
    if host := cfg.smtp_host:
        where = f"{host}:{cfg.smtp_port}"
        mail = partial(_mail, cfg, host, event, password, ssl_context)
        failures += _try("smtp", where, mail, password)
    if url := cfg.webhook_url:
        post = partial(_post, cfg, url, event, password)
        failures += _try("webhook", _origin(url), post, password)
    return failures


def text(event: Event) -> str:
    """The human summary: the same words in the mail body and the webhook's "text"."""
    attempt = event.attempt
    lines = [headline(event), ""]
    lines.append(
        f"result:   {_result(event)}" + (f" at step {attempt.step}" if attempt.step else "")
    )
    lines.append(f"commit:   {_commit(event)}")
    lines.append(f"live now: {_live(event)}")
    if attempt.message:
        lines.append(f"message:  {attempt.message}")
    if attempt.problems:
        lines.append("problems:")
        lines += [line for problem in attempt.problems for line in _problem(problem)]
    if attempt.timings:
        lines.append(f"timings:  {_timings(attempt.timings)}")
    lines.append(f"finished: {attempt.finished_at or 'not finished'}")
    return "\n".join(lines)


def headline(event: Event) -> str:
    """One line, e.g. `dhcp1 (primary): refused 1a2b3c4d5e6f "Add printer"`."""
    line = f"{event.node} ({event.role}): {_result(event)} {_short(event.attempt.sha)}"
    if event.subject:
        line += f' "{_one_line(event.subject)}"'
    return line


# --- the summary's parts ---


def _result(event: Event) -> str:
    result = event.attempt.result
    return result.replace("_", " ") if result else "unfinished"


def _short(sha: str | None) -> str:
    return sha[:SHORT_SHA] if sha else "(no commit)"


def _one_line(value: str) -> str:
    # A header with a line break is refused by email, or worse, injects headers.
    return " ".join(value.split())


def _commit(event: Event) -> str:
    parts = [event.attempt.sha or "(no commit resolved)"]
    if event.subject:
        parts.append(f'"{_one_line(event.subject)}"')
    if event.author:
        parts.append(f"by {event.author}")
    return " ".join(parts)


def _live(event: Event) -> str:
    if not event.live_sha:
        return "nothing deployed by dhcp-gitops yet"
    same = event.live_sha == event.attempt.sha
    return f"{_short(event.live_sha)} ({'this commit' if same else 'not this commit'})"


def _problem(problem: Problem) -> list[str]:
    return [f"  {problem}", *(f"      | {line}" for line in problem.context)]


def _timings(timings: dict[str, float]) -> str:
    return ", ".join(f"{step} {seconds:.2f}s" for step, seconds in timings.items())


# --- delivery, one channel at a time ---


def _try(channel: str, where: str, deliver: Callable[[], None], password: str | None) -> list[str]:
    try:
        deliver()
    # Every failure becomes a line: a notification must never stop a deploy, and
    # no list of exception types covers what a broken server or TLS stack can raise.
    except Exception as err:  # noqa: BLE001
        line = _redact(f"{channel}: {where}: {_reason(err)}", password)
        log.warning("notification failed: %s", line)
        return [line]
    log.info("notification sent by %s to %s", channel, where)
    return []


def _reason(err: BaseException) -> str:
    """A one-line cause; server replies are quoted, our own settings are never echoed."""
    if isinstance(err, smtplib.SMTPServerDisconnected) and isinstance(err.__context__, OSError):
        return _reason(err.__context__)  # smtplib wraps the socket's own error, say that
    if isinstance(err, smtplib.SMTPAuthenticationError):
        return f"login refused: {_reply(err)}"
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        return _refused(err.recipients)
    if isinstance(err, smtplib.SMTPResponseException):
        return f"server answered {_reply(err)}"
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"TLS: {err.verify_message or err.reason}"
    if isinstance(err, urllib.error.HTTPError):
        return f"answered {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        cause = err.reason
        return _reason(cause) if isinstance(cause, BaseException) else str(cause)
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    if isinstance(err, _NotSent | smtplib.SMTPException):
        return str(err)
    return f"{type(err).__name__}: {err}"


def _reply(err: smtplib.SMTPResponseException) -> str:
    message = err.smtp_error
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return f"{err.smtp_code} {_one_line(str(message))}"


def _refused(recipients: dict[str, tuple[int, bytes]]) -> str:
    each = (
        f"{to} ({code} {reply.decode('utf-8', 'replace')})"
        for to, (code, reply) in recipients.items()
    )
    return "recipients refused: " + ", ".join(each)


def _redact(value: str, secret: str | None) -> str:
    return value.replace(secret, REDACTED) if secret else value


# --- smtp ---


def _mail(
    cfg: Notify,
    host: str,
    event: Event,
    password: str | None,
    context: ssl.SSLContext | None,
) -> None:
    _check_mail_settings(cfg, password)
    message = _message(cfg, event, password)
    with smtplib.SMTP(host, cfg.smtp_port, timeout=cfg.timeout) as smtp:
        if cfg.smtp_starttls:
            smtp.starttls(context=context or ssl.create_default_context())
        if cfg.smtp_user and password is not None:
            smtp.login(cfg.smtp_user, password)
        refused = smtp.send_message(message, cfg.mail_from, list(cfg.mail_to))
    if refused:  # some recipients took it, these did not
        raise _NotSent(_refused(refused))


def _check_mail_settings(cfg: Notify, password: str | None) -> None:
    if not cfg.mail_to:
        raise _NotSent("mail_to is empty")
    if cfg.smtp_user and password is None:
        raise _NotSent("smtp_user is set but no password was read (smtp_password_file)")
    # AUTH PLAIN and LOGIN are base64, not encryption: no password over a clear line.
    if cfg.smtp_user and not cfg.smtp_starttls:
        raise _NotSent("smtp_user needs smtp_starttls; not sending a password in clear")


def _message(cfg: Notify, event: Event, password: str | None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = cfg.mail_from
    message["To"] = ", ".join(cfg.mail_to)
    message["Subject"] = _redact(f"[dhcp-gitops] {headline(event)}", password)
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid("dhcp-gitops")
    log_lines = event.log.rstrip("\n") or "(no log lines)"
    body = f"{text(event)}\n\n--- log ---\n{log_lines}\n"
    message.set_content(_redact(body, password))
    return message


# --- json webhook ---


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib turns a redirected POST into a GET without the body: the hook would
    # never see the event, yet we would report success. A 3xx is a failure instead.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _post(cfg: Notify, url: str, event: Event, password: str | None) -> None:
    if urlsplit(url).scheme not in ("http", "https"):
        raise _NotSent("webhook_url must be an http:// or https:// URL")
    request = urllib.request.Request(  # noqa: S310 (scheme checked just above)
        url,
        data=json.dumps(payload(event, password)).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "dhcp-gitops"},
    )
    # Built per call so proxy settings are read from the environment as it is now.
    opener = urllib.request.build_opener(_NoRedirect())
    with opener.open(request, timeout=cfg.timeout) as response:
        status: int = response.status
        reason: str = response.reason
    if not 200 <= status < 300:
        raise _NotSent(f"answered {status} {reason}")


def payload(event: Event, password: str | None = None) -> dict[str, Any]:
    """The webhook body: Slack reads "text", other receivers the fields."""
    attempt = event.attempt
    return {
        "text": _redact(text(event), password),
        "node": event.node,
        "role": event.role,
        "result": attempt.result,
        "sha": attempt.sha,
        "step": attempt.step,
        "problems": [_redact(str(problem), password) for problem in attempt.problems],
        "live_sha": event.live_sha,
    }


def _origin(url: str) -> str:
    # Only scheme, host and port: a chat hook's path is often its secret token.
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a bad port or bracket; _post reports the URL as unusable
        return "webhook_url"
    return f"{parts.scheme}://{parts.hostname or ''}{port}"
