"""What the REST routes share: the server's runtime, worker pool, metrics and limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

from service.api.auth import BearerToken
from service.api.metrics import Metrics
from service.errors import InvalidArgument, ResourceExhausted
from service.runtime import Runtime

T = TypeVar("T")
# Server lifecycle as the REST surface sees it: "starting" (warm-up), "serving", "draining".
ServerState = Callable[[], str]


@dataclass
class RestContext:
    """The server-side objects every route works with (kept on `app.state.context`)."""

    runtime: Runtime
    executor: Executor
    metrics: Metrics
    max_body_bytes: int
    state: ServerState
    auth: BearerToken | None = None

    async def in_worker(self, work: Callable[[], T]) -> T:
        """Run `work` on the server's compute pool (never on the event loop)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, work)

    async def read_body(self, request: Request) -> bytes:
        """The request body, refused with RESOURCE_EXHAUSTED (413) past the size limit."""
        limit = self.max_body_bytes
        declared = request.headers.get("content-length")
        over = f"over the server's limit of {limit} bytes (--max-message-mb)"
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ResourceExhausted(f"body: {declared} bytes, {over}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ResourceExhausted(f"body: more than {limit} bytes, {over}")
            chunks.append(chunk)
        return b"".join(chunks)


def context_of(request: Request) -> RestContext:
    """The app's `RestContext` (a FastAPI dependency)."""
    return request.app.state.context


#: A route parameter that receives the app's `RestContext`.
Context = Annotated[RestContext, Depends(context_of)]


def parse_json(data: bytes) -> Any:
    """The JSON document in `data`; INVALID_ARGUMENT naming the body otherwise."""
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidArgument(f"body: not valid JSON ({error})") from None


def json_bytes(payload: Any) -> bytes:
    """Compact JSON (no NaN: non-finite numbers were turned into null before)."""
    return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()
