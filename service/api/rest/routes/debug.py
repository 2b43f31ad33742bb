"""The /debug page and its sample generator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, Response

from service.api.rest.context import Context, json_bytes
from service.api.rest.sample import MAX_SAMPLE_STEPS, sample_request
from service.errors import InvalidArgument
from service.wire.json import describe_json_value

#: torch.Generator.manual_seed takes any 64-bit value; the contract is a non-negative int64.
MAX_SEED = 2**63 - 1

STATIC = Path(__file__).parent.parent / "static"

router = APIRouter(tags=["debug"])


@router.get("/debug", include_in_schema=False)
async def debug_page() -> FileResponse:
    return FileResponse(STATIC / "debug.html", media_type="text/html")


@router.get("/debug/sample")
async def debug_sample(
    context: Context,
    model_name: Annotated[str, Query(description="Empty = the default model.")] = "",
    steps: Annotated[
        int,
        Query(
            description=f"T, from 1 to {MAX_SAMPLE_STEPS}.",
            openapi_examples={"short": {"summary": "8 steps", "value": 8}},
        ),
    ] = 24,
    seed: Annotated[int, Query(description=f"Random seed, 0 to {MAX_SEED}.")] = 0,
) -> Response:
    """A generated POST /v1/advantage body for a model: one trajectory of `steps` steps ([T]: no
    batch dimensions) with a terminal end at round(0.3·steps) and a truncated one at
    round(0.65·steps); observations [T, *obs_shape] of the model's inputs."""
    if not 1 <= steps <= MAX_SAMPLE_STEPS:
        got = describe_json_value(steps)
        raise InvalidArgument(f"steps: expected 1 to {MAX_SAMPLE_STEPS}, got {got}")
    if not 0 <= seed <= MAX_SEED:
        got = describe_json_value(seed)
        raise InvalidArgument(f"seed: expected 0 to {MAX_SEED} (2**63 - 1), got {got}")
    model = context.runtime.model(model_name)
    body = await context.in_worker(lambda: json_bytes(sample_request(model, steps, seed)))
    return Response(body, media_type="application/json")
