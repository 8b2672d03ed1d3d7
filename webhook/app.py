"""The agent's HTTP API: status for people and monitoring, webhooks and /sync for triggers.

Read endpoints need no credentials (listen on loopback or a management
network); POST /sync needs the bearer token; webhooks need the forge's
signature. No response, log line or error ever carries a secret.
"""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from agent import __version__, failover, peer, status
from agent.loop import Loop
from agent.service import Supervisor
from webhook import forges
from webhook.metrics import Metrics

REPLAY_MEMORY = 1000  # delivery ids remembered to ignore a forge's redelivery
_NONE = type(
    "_NoDeploy", (), {"sha": None}
)()  # delivery ids remembered to ignore a forge's redelivery


@dataclass(frozen=True)
class Secrets:
    """Read once at start; compared in constant time, never echoed."""

    webhook: bytes | None = None
    token: bytes | None = None

    def __repr__(self) -> str:
        return "Secrets(<hidden>)"


@dataclass
class Runtime:
    loop: Loop
    secrets: Secrets
    metrics: Metrics
    max_body: int
    seen: OrderedDict[str, None] = field(default_factory=OrderedDict)
    started: float = field(default_factory=time.monotonic)

    def first_delivery(self, delivery_id: str | None) -> bool:
        if delivery_id is None:
            return True
        if delivery_id in self.seen:
            return False
        self.seen[delivery_id] = None
        if len(self.seen) > REPLAY_MEMORY:
            self.seen.popitem(last=False)
        return True


def create_app(rt: Runtime) -> FastAPI:
    app = FastAPI(
        title="dhcp-gitops agent",
        version=__version__,
        description="Status and triggers of one dhcp-gitops agent.",
    )

    @app.get("/status", summary="What is live, what is being done, and how dhcpd is")
    def get_status() -> dict[str, Any]:
        return status_document(rt)

    @app.get("/history", summary="Recent reconcile attempts, newest last")
    def get_history(limit: int = 20) -> list[dict[str, Any]]:
        limit = max(1, min(limit, 1000))
        return [a.model_dump(mode="json") for a in rt.loop.node.store.history(limit)]

    @app.get("/healthz", summary="200 while the loop (and a supervised dhcpd) run")
    def healthz() -> JSONResponse:
        problems = health_problems(rt)
        code = 503 if problems else 200
        return JSONResponse({"ok": not problems, "problems": problems}, status_code=code)

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    def metrics() -> Response:
        refresh_gauges(rt)
        return Response(rt.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.post("/sync", status_code=202, summary="Reconcile now (bearer token)")
    def sync(request: Request) -> dict[str, str]:
        require_token(rt, request.headers.get("authorization"))
        fresh = rt.loop.trigger("POST /sync")
        return {"status": "queued" if fresh else "already queued"}

    @app.post("/webhook/{provider}", summary="A forge's push webhook")
    async def webhook(provider: str, request: Request) -> JSONResponse:
        body = await read_body(request, rt.max_body)
        code, outcome = handle_webhook(rt, provider, dict(request.headers), body)
        if provider in forges.PROVIDERS:
            rt.metrics.webhooks.labels(provider, outcome).inc()
        return JSONResponse({"status": outcome}, status_code=code)

    return app


def handle_webhook(
    rt: Runtime, provider: str, headers: dict[str, str], body: bytes
) -> tuple[int, str]:
    """(status code, outcome) of one delivery: check, parse, then trigger or ignore."""
    if provider not in forges.PROVIDERS:
        raise HTTPException(404, f"unknown provider; use one of {', '.join(forges.PROVIDERS)}")
    if rt.secrets.webhook is None:
        raise HTTPException(403, "webhooks are off: set [http] webhook_secret_file")
    try:
        forges.check_signature(provider, headers, body, rt.secrets.webhook)
        delivery = forges.parse(provider, headers, body)
    except forges.WebhookError as err:
        raise HTTPException(err.status, err.message) from err
    if not rt.first_delivery(delivery.delivery_id):
        return 200, "duplicate delivery ignored"
    if delivery.event == "ping":
        return 200, "pong"
    branch = rt.loop.node.config.source.branch
    if delivery.event != "push" or delivery.branch not in (branch, None):
        return 200, "ignored: not a push to " + branch
    fresh = rt.loop.trigger(f"{provider} webhook {(delivery.sha or '')[:12]}".strip())
    return 202, "queued" if fresh else "already queued"


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes the limit (not after reading it all)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def require_token(rt: Runtime, authorization: str | None) -> None:
    if rt.secrets.token is None:
        raise HTTPException(403, "POST /sync is off: set [http] token_file")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise HTTPException(401, "bearer token required", {"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.strip().encode(), rt.secrets.token):
        raise HTTPException(403, "wrong token")


def status_document(rt: Runtime) -> dict[str, Any]:
    loop, progress = rt.loop, rt.loop.progress
    doc = status.report(loop.node, busy=progress.busy)
    doc["state"] = progress.phase
    doc["working_on"] = progress.working_on
    doc["dhcpd"] = dhcpd_health(loop)
    doc["reconciles"] = progress.reconciles
    doc["next_retry_in"] = (
        None
        if progress.retry_at is None
        else round(max(0.0, progress.retry_at - time.monotonic()), 1)
    )
    doc["uptime_seconds"] = round(time.monotonic() - rt.started, 1)
    doc["server_time"] = datetime.now(UTC).isoformat(timespec="seconds")
    doc["server_time_unix"] = time.time()  # the peer measures clock skew with it
    doc["peer"] = peer.report(loop.peer, (doc["deployed"] or {}).get("sha"))
    doc["failover"] = [vars(s) for s in failover.read(loop.node.config.dhcpd.lease_file)]
    return doc


def dhcpd_health(loop: Loop) -> dict[str, Any]:
    svc = loop.node.service
    mode = loop.node.config.dhcpd.restart
    if not isinstance(svc, Supervisor):
        return {"mode": mode}
    pid = svc.proc.pid if svc.alive() and svc.proc else None
    return {"mode": mode, "running": svc.alive(), "pid": pid,
            "unexpected_restarts": loop.progress.dhcpd_restarts}  # fmt: skip


def health_problems(rt: Runtime) -> list[str]:
    problems = []
    if not rt.loop.is_running:
        problems.append("the reconcile loop is not running")
    health = dhcpd_health(rt.loop)
    if health.get("running") is False:
        problems.append("the supervised dhcpd is not running")
    return problems


def refresh_gauges(rt: Runtime) -> None:
    health = dhcpd_health(rt.loop)
    if "running" in health:
        rt.metrics.dhcpd_up.set(1 if health["running"] else 0)
    node = rt.loop.node
    state = node.store.load()
    drift = status.live(node, state, rt.loop.progress.busy)["drift"]
    rt.metrics.drift.set(0 if drift in ("none", "deploying") else 1)
    deployed = state.deployed
    rt.metrics.observe_pair(
        peer.report(rt.loop.peer, deployed.sha if deployed else None),
        failover.read(node.config.dhcpd.lease_file),
    )
