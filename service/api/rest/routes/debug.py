"""The /debug page and its sample generator."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from service.api.rest.context import Context, json_bytes
from service.api.rest.sample import MAX_SAMPLE_STEPS, sample_request
from service.errors import InvalidArgument

STATIC = Path(__file__).parent.parent / "static"

router = APIRouter(tags=["debug"])


@router.get("/debug", include_in_schema=False)
async def debug_page() -> FileResponse:
    return FileResponse(STATIC / "debug.html", media_type="text/html")


@router.get("/debug/sample")
async def debug_sample(
    context: Context, model_name: str = "", steps: int = 24, seed: int = 0
) -> Response:
    """A generated ComputeAdvantage body for a model: one trajectory of `steps` steps with a
    terminal end at round(0.3·steps) and a truncated one at round(0.65·steps)."""
    if not 1 <= steps <= MAX_SAMPLE_STEPS:
        raise InvalidArgument(f"steps: expected 1 to {MAX_SAMPLE_STEPS}, got {steps}")
    model = context.runtime.model(model_name)
    body = await context.in_worker(lambda: json_bytes(sample_request(model, steps, seed)))
    return Response(body, media_type="application/json")
