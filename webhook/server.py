"""`dhcp-gitops agent`: the reconcile loop and the HTTP API in one process."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import uvicorn

from agent import config
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
    if logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)  # a service logs what it does
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
        log_level="warning",
        access_log=False,  # request lines would repeat webhook URLs to the journal
        timeout_graceful_shutdown=10,
        lifespan="off",
    )
