"""Probes and metrics: /healthz, /readyz, /metrics (open even when auth is on)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from service.api.metrics import CONTENT_TYPE_LATEST
from service.api.rest.context import Context

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(context: Context) -> JSONResponse:
    """Readiness: models loaded, kernels warmed up, not draining, and on a replica its first
    copy of the learner's current versions installed (503 otherwise: "syncing")."""
    now = context.state()
    registry = context.runtime.registry
    ready = now == "serving" and len(registry) > 0
    body: dict[str, object] = {
        "status": "ready" if ready else now,
        "models": [m.name for m in registry],
    }
    if context.runtime.learner is not None:
        body["replica_of"] = context.runtime.learner
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response)
async def prometheus_metrics(context: Context) -> Response:
    """Prometheus text exposition of this server's metrics (gRPC and REST)."""
    return Response(context.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
