"""`dhcp-gitops agent`: the reconcile loop and the HTTP API in one process."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from agent import cli, config, logs
from agent.config import AgentConfig
from agent.daemon import notify
from agent.daemon.loop import AfterAttempt, Loop
from agent.engine.reconcile import Node
from agent.engine.state import Attempt
from agent.errors import ConfigError
from webhook.app import Runtime, create_app
from webhook.credentials import Secrets
from webhook.metrics import Metrics

log = logging.getLogger("agent.server")


# The agent's restart (the unit's RestartKillSignal): exit, leaving a supervised dhcpd
# running for the next agent to adopt. SIGTERM and SIGINT stop it too.
HAND_OFF = signal.SIGUSR2


def serve(config_file: Path) -> int:
    """Run until SIGTERM, SIGINT or HAND_OFF; then let the running reconcile finish, and
    stop dhcpd unless handing it over."""
    cfg = config.load(config_file)
    # A service logs what it does: INFO at least (-v: debug), in the configured format.
    logs.configure(cfg.log.format, min(logging.getLogger().level, logging.INFO))
    cli.check_host(cfg)
    node = Node.from_config(cfg)
    metrics = Metrics()
    password = _read_secret(cfg.notify.smtp_password_file, cfg, "notify", "smtp_password_file")
    loop = Loop(node, after=_after_attempt(cfg, node, metrics, password))
    rt = Runtime(
        loop=loop,
        secrets=read_secrets(cfg),
        metrics=metrics,
        max_body=cfg.http.max_body,
        body_timeout=cfg.http.body_timeout,
    )
    server = _Server(_uvicorn_config(cfg, rt))
    log.warning("dhcp-gitops agent %s (%s) listening on %s", cfg.node.name, cfg.node.role,
                cfg.http.listen)  # fmt: skip
    loop.start()
    try:
        server.run()  # uvicorn handles SIGTERM/SIGINT: it returns once it has shut down
    finally:
        loop.stop(hand_off=_may_hand_off(server))
    return 0


def _may_hand_off(server: _Server) -> bool:
    """As pid 1 (a container) nothing outlives us: dhcpd is stopped, not killed with us."""
    if server.hand_off and os.getpid() == 1:
        log.warning("pid 1: dhcpd cannot outlive this container; stopping it")
        return False
    return server.hand_off


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its shutdown, which would kill the process before
    the loop and a supervised dhcpd are stopped: here a signal only ends serving."""

    hand_off = False  # HAND_OFF came, and no SIGTERM or SIGINT (a stop wins)
    _stop_asked = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().set_exception_handler(_loop_error)
        await super().startup(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        signals = (signal.SIGINT, signal.SIGTERM, HAND_OFF)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._stop_asked = self._stop_asked or sig != HAND_OFF
        self.hand_off = not self._stop_asked
        super().handle_exit(sig, frame)


def read_secrets(cfg: AgentConfig) -> Secrets:
    return Secrets(
        webhook=_bytes(
            _read_secret(cfg.http.webhook_secret_file, cfg, "http", "webhook_secret_file")
        ),
        token=_bytes(_read_secret(cfg.http.token_file, cfg, "http", "token_file")),
    )


def _read_secret(path: Path | None, cfg: AgentConfig, section: str, key: str) -> str | None:
    if path is None:
        return None
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise ConfigError(f"{cfg.file}: [{section}] {key}: {path} is empty")
    return value


def _bytes(value: str | None) -> bytes | None:
    return None if value is None else value.encode()


def _after_attempt(
    cfg: AgentConfig, node: Node, metrics: Metrics, password: str | None
) -> AfterAttempt:
    def after(attempt: Attempt, deploy_log: str) -> None:
        deployed = node.store.load().deployed
        live_sha = deployed.sha if deployed else None
        metrics.observe(attempt, live_sha)
        event = notify.Event(
            node=cfg.node.name,
            role=cfg.node.role,
            attempt=attempt,
            subject=attempt.subject,
            author=attempt.author,
            live_sha=live_sha,
            log=deploy_log,
        )
        notify.send(cfg.notify, event, password)  # logs its own failures; never raises

    return after


def _uvicorn_config(cfg: AgentConfig, rt: Runtime) -> uvicorn.Config:
    http = cfg.http
    return uvicorn.Config(
        create_app(rt),
        host=http.host,
        port=http.port,
        ssl_certfile=str(http.tls_cert) if http.tls_cert else None,
        ssl_keyfile=str(http.tls_key) if http.tls_key else None,
        http=_BoundedH11,
        backlog=BACKLOG,
        timeout_keep_alive=IDLE_TIMEOUT,
        log_config=None,  # uvicorn's lines go through our handler, in our format
        log_level="warning",
        access_log=False,  # request lines would repeat webhook URLs to the journal
        timeout_graceful_shutdown=10,
        lifespan="off",
    )


# --- connections: bounded, so that idle ones cannot take every file descriptor --------

MAX_CONNECTIONS = 100  # open at once: the forge, the peer, monitoring, a few people
FD_SHARE = 4  # connections take at most 1/FD_SHARE of RLIMIT_NOFILE: git and dhcpd need the rest
BACKLOG = 128  # connections the kernel queues before we accept them
IDLE_TIMEOUT = 5  # seconds a connection may stay silent, before its request or between two
LOG_EVERY = 10.0  # seconds between log lines of a connection fault that repeats
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n"
        b"connection: close\r\ncontent-length: 22\r\n\r\ntoo many connections\r\n")  # fmt: skip

_refused = logs.Throttle(log, LOG_EVERY)
_accept_failed = logs.Throttle(log, LOG_EVERY, logging.ERROR)


def connection_cap() -> int:
    """How many connections may be open now; read each time, as prlimit can change it."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(1, min(MAX_CONNECTIONS, soft // FD_SHARE))


class _BoundedH11(H11Protocol):
    """uvicorn's HTTP/1.1, with a cap on open connections and a clock on silent ones.

    uvicorn's limit_concurrency answers 503 only once a request has arrived, and
    its keep-alive timeout starts only after a first response: a client that
    connects and sends nothing would hold its descriptor for ever.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        cap = connection_cap()
        if len(self.connections) > cap:
            transport.write(BUSY)
            transport.close()
            _refused(f"HTTP: refused connections beyond {cap} open at once")
            return
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )


def _loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio logs an accept() that runs out of descriptors once per queued connection,
    thousands of lines a second: here one line per LOG_EVERY, with a count."""
    error = context.get("exception")
    accepting = "accept" in str(context.get("message", ""))
    if accepting and isinstance(error, OSError) and error.errno in ACCEPT_FAULTS:
        _accept_failed(f"HTTP: cannot accept connections: {logs.one_line(error)}")
        return
    loop.default_exception_handler(context)


ACCEPT_FAULTS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
