"""The agent's HTTP API: status for people and monitoring, webhooks and /sync for triggers.

Read endpoints need no credentials (listen on loopback or a management
network); POST /sync needs the bearer token; webhooks need the forge's
signature. No response, log line or error ever carries a secret, nor echoes
what a caller sent (a misplaced token would come back otherwise).

Every answer the routes can give is declared in the OpenAPI document, which
tests/test_http_hostile.py holds the running agent to with schemathesis.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel

from agent import __version__
from agent.daemon import peer
from agent.daemon.loop import Loop
from agent.engine import status
from agent.engine.document import AgentStatus, DhcpdHealth
from webhook import body, forges
from webhook.credentials import Secrets, same
from webhook.metrics import Metrics
from webhook.signatures import WebhookError

REPLAY_MEMORY = 1000  # delivery ids remembered to ignore a forge's redelivery


@dataclass
class Runtime:
    loop: Loop
    secrets: Secrets
    metrics: Metrics
    max_body: int
    body_timeout: float = 10.0
    seen: OrderedDict[str, None] = field(default_factory=OrderedDict)
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        # The first drift check, before the API answers: no request ever hashes the tree.
        status.refresh(self.loop.node)

    def first_delivery(self, provider: str, delivery_id: str | None) -> bool:
        """False for a delivery id seen before: a forge's redelivery, or a replay."""
        if delivery_id is None:
            return True
        key = f"{provider} {delivery_id}"
        if key in self.seen:
            return False
        self.seen[key] = None
        if len(self.seen) > REPLAY_MEMORY:
            self.seen.popitem(last=False)
        return True


# --- what the API documents -----------------------------------------------------------


class Outcome(BaseModel):
    status: str


class Refusal(BaseModel):
    detail: str


class Health(BaseModel):
    ok: bool
    problems: list[str]


def _answer(description: str, model: type[BaseModel] = Refusal) -> dict[str, Any]:
    return {"description": description, "model": model}


WEBHOOK_ANSWERS: dict[int | str, dict[str, Any]] = {
    202: {"description": "Queued: a reconcile fetches the branch head (the newest commit wins)"},
    200: _answer("Ignored: a ping, another branch or event, a repeated delivery id", Outcome),
    400: _answer("Malformed: the payload or a header the provider needs"),
    401: _answer("Unsigned: the signature or token header is missing"),
    403: _answer("Bad signature, or webhooks are off (no webhook_secret_file)"),
    404: _answer("Unknown provider"),
    408: _answer("The body did not arrive within [http] body_timeout; the connection is closed"),
    413: _answer("The body is larger than [http] max_body"),
}
SYNC_ANSWERS: dict[int | str, dict[str, Any]] = {
    202: {"description": "Queued, or already queued: one reconcile serves every trigger"},
    401: _answer("No bearer token"),
    403: _answer("Wrong token, or /sync is off (no token_file)"),
    503: _answer("The reconcile loop is not running: nothing would act on it"),
}
# The body a forge sends: read raw (the signature covers its exact bytes), so
# FastAPI does not parse it; declared here for the docs and for schemathesis.
WEBHOOK_BODY = {
    "required": False,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "description": "The forge's push payload; generic: optional, may be empty",
                "properties": {
                    "ref": {"type": "string", "example": "refs/heads/main"},
                    "after": {"type": "string", "example": "0" * 40},
                },
            }
        },
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "description": "GitHub's and Gitea's form type: the JSON payload in `payload`",
                "properties": {"payload": {"type": "string"}},
            }
        },
    },
}


def _webhook_headers() -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "header", "required": False, "schema": {"type": "string"},
         "description": what}
        for name, what in forges.headers_read().items()
    ]  # fmt: skip


# Documented as an enum, checked by the route: another name answers 404, not 422.
PROVIDER = Path(json_schema_extra={"enum": list(forges.PROVIDERS)})
BEARER = HTTPBearer(auto_error=False, description="the token of [http] token_file")


# --- routes ---------------------------------------------------------------------------


def create_app(rt: Runtime) -> FastAPI:
    app = FastAPI(
        title="dhcp-gitops agent",
        version=__version__,
        description="Status and triggers of one dhcp-gitops agent.",
    )
    app.add_exception_handler(RequestValidationError, _invalid_request)

    @app.get(
        "/status",
        summary="What is live, what is being done, and how dhcpd is",
        response_model=AgentStatus,
    )
    async def get_status() -> Response:
        # On the event loop (no thread hand-off; nothing below waits on the network or
        # hashes), and serialized by the model itself: FastAPI would validate it again.
        return Response(status_document(rt).to_json(), media_type="application/json")

    @app.get("/history", summary="Recent reconcile attempts, newest last")
    def get_history(
        limit: int = Query(20, description="how many, newest last (1 to 1000; clamped)"),
    ) -> list[dict[str, Any]]:
        limit = max(1, min(limit, 1000))
        return [a.model_dump(mode="json") for a in rt.loop.node.store.history(limit)]

    @app.get(
        "/healthz",
        summary="200 while the loop (and a supervised dhcpd) run",
        response_model=Health,
        responses={503: {"description": "Something is down: see problems", "model": Health}},
    )
    def healthz() -> JSONResponse:
        problems = health_problems(rt)
        code = 503 if problems else 200
        return JSONResponse({"ok": not problems, "problems": problems}, status_code=code)

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    def metrics() -> Response:
        refresh_gauges(rt)
        return Response(rt.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.post(
        "/sync",
        status_code=202,
        summary="Reconcile now (bearer token)",
        response_model=Outcome,
        responses=SYNC_ANSWERS,
        dependencies=[Depends(BEARER)],
    )
    def sync(request: Request) -> dict[str, str]:
        require_token(rt.secrets.token, request.headers.get("authorization"))
        if not rt.loop.is_running:
            raise HTTPException(503, LOOP_DOWN + ": the sync was not queued")
        fresh = rt.loop.trigger("POST /sync")
        return {"status": "queued" if fresh else "already queued"}

    @app.post(
        "/webhook/{provider}",
        status_code=202,
        summary="A forge's push webhook",
        response_model=Outcome,
        responses=WEBHOOK_ANSWERS,
        openapi_extra={"parameters": _webhook_headers(), "requestBody": WEBHOOK_BODY},
    )
    async def webhook(request: Request, provider: str = PROVIDER) -> JSONResponse:
        try:
            raw = await body.read(request, rt.max_body, rt.body_timeout)
            code, outcome = handle_webhook(rt, provider, dict(request.headers), raw)
        except HTTPException as refused:
            count_webhook(rt, provider, refused.status_code)
            raise
        count_webhook(rt, provider, code)
        return JSONResponse({"status": outcome}, status_code=code)

    return app


async def _invalid_request(request: Request, error: Exception) -> JSONResponse:
    """FastAPI's 422 without the `input` it would echo: what was sent is never sent back."""
    assert isinstance(error, RequestValidationError)
    detail = [{"loc": e["loc"], "msg": e["msg"], "type": e["type"]} for e in error.errors()]
    return JSONResponse({"detail": detail}, status_code=422)


def handle_webhook(
    rt: Runtime, provider: str, headers: dict[str, str], raw: bytes
) -> tuple[int, str]:
    """(status code, outcome) of one delivery: check, parse, then trigger or ignore."""
    if provider not in forges.PROVIDERS:
        raise HTTPException(404, f"unknown provider; use one of {', '.join(forges.PROVIDERS)}")
    if rt.secrets.webhook is None:
        raise HTTPException(403, "webhooks are off: set [http] webhook_secret_file")
    try:
        forges.check_signature(provider, headers, raw, rt.secrets.webhook)
        delivery = forges.parse(provider, headers, raw)
    except WebhookError as err:
        raise HTTPException(err.status, err.message) from err
    if not rt.first_delivery(provider, delivery.delivery_id):
        return 200, "duplicate delivery ignored"
    if delivery.event == "ping":
        return 200, "pong"
    branch = rt.loop.node.config.source.branch
    if delivery.event != "push" or delivery.branch not in (branch, None):
        return 200, "ignored: not a push to " + branch
    reason = f"{provider} webhook {(delivery.sha or '')[:12]}".strip()
    fresh = rt.loop.trigger_push(delivery.sha, reason)
    return 202, "queued" if fresh else "already queued"


# Refusals by code, for the outcome label: a run of 403s is someone guessing.
OUTCOMES = {
    202: "queued", 200: "ignored",
    400: "malformed", 401: "unsigned", 403: "refused", 408: "too slow", 413: "too large",
}  # fmt: skip


def count_webhook(rt: Runtime, provider: str, code: int) -> None:
    if provider in forges.PROVIDERS:  # any other path would become a label
        rt.metrics.webhooks.labels(provider, OUTCOMES.get(code, str(code))).inc()


def require_token(token: bytes | None, authorization: str | None) -> None:
    """Pass, or HTTPException 401 (no bearer token) or 403 (off, or the wrong token)."""
    if token is None:
        raise HTTPException(403, "POST /sync is off: set [http] token_file")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise HTTPException(401, "bearer token required", {"WWW-Authenticate": "Bearer"})
    if not same(given.strip().encode(), token):
        raise HTTPException(403, "wrong token")


# --- the read endpoints' documents ----------------------------------------------------

LOOP_DOWN = "the reconcile loop is not running"


def status_document(rt: Runtime) -> AgentStatus:
    """GET /status. Nothing here hashes the live tree: that is the loop's last check."""
    loop, progress = rt.loop, rt.loop.progress
    node = loop.node
    disk = status.document(node, progress.busy, status.last_check(node))
    if progress.unrecorded is not None:  # the state dir could not take it: from memory
        disk = disk.model_copy(update={"last_attempt": status.attempt_record(progress.unrecorded)})
    own = disk.deployed.sha if disk.deployed else None
    retry = progress.retry_at
    return AgentStatus(
        **dict(disk),
        state=progress.phase,
        working_on=progress.working_on,
        dhcpd=dhcpd_health(loop),
        reconciles=progress.reconciles,
        next_retry_in=None if retry is None else round(max(0.0, retry - time.monotonic()), 1),
        uptime_seconds=round(time.monotonic() - rt.started, 1),
        server_time=datetime.now(UTC).isoformat(timespec="seconds"),
        server_time_unix=time.time(),  # the peer measures clock skew with it
        peer=peer.report(loop.peer, own),
        failover=node.server.pair_states(),
    )


def dhcpd_health(loop: Loop) -> DhcpdHealth:
    """The server's health for /status: a supervised one's pid, and how often it died."""
    health = loop.node.server.health()
    if health.running is None:
        return DhcpdHealth(mode=health.mode)
    return DhcpdHealth(mode=health.mode, running=health.running, pid=health.pid,
                       unexpected_restarts=loop.progress.dhcpd_restarts)  # fmt: skip


def health_problems(rt: Runtime) -> list[str]:
    problems = []
    if not rt.loop.is_running:
        problems.append(LOOP_DOWN)
    if dhcpd_health(rt.loop).running is False:
        problems.append("the supervised dhcpd is not running")
    return problems


def refresh_gauges(rt: Runtime) -> None:
    running = dhcpd_health(rt.loop).running
    if running is not None:
        rt.metrics.dhcpd_up.set(1 if running else 0)
    node = rt.loop.node
    state = node.store.load()
    clean = rt.loop.progress.busy or status.last_check(node).drift == "none"
    rt.metrics.drift.set(0 if clean else 1)
    deployed = state.deployed
    rt.metrics.observe_pair(
        peer.report(rt.loop.peer, deployed.sha if deployed else None),
        node.server.pair_states(),
    )
