"""What the REST routes share: the server's runtime, worker pool, metrics and limits."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import torch
from fastapi import Depends, Request

from service.api.admission import Admission
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
    admission: Admission
    auth: BearerToken | None = None
    #: REST's own pool for parsing and writing JSON (kept off the compute pool).
    json_executor: Executor | None = None

    async def in_worker(self, work: Callable[[], T]) -> T:
        """Run `work` on the server's compute pool (never on the event loop)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, work)

    async def in_json_worker(self, work: Callable[[], T]) -> T:
        """Run `work` (JSON parsing or writing) on REST's own pool, never on the compute pool."""
        return await asyncio.get_running_loop().run_in_executor(self.json_executor, work)

    def close(self) -> None:
        """Stop REST's JSON pool (the compute pool is the server's)."""
        if self.json_executor is not None:
            self.json_executor.shutdown(wait=False, cancel_futures=True)

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


#: Deepest JSON nesting (arrays and objects) a request may have: a [*B, T, *obs] tensor needs
#: a handful of levels; the bound keeps every walk over the document shallow.
MAX_JSON_DEPTH = 64
# A JSON string, unrolled ("normal* (special normal*)*") so long strings cost one fast loop.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in a valid JSON document, without recursion.

    Strings are cut out first (their brackets are text), then the brackets are counted with a
    running sum in torch: linear, and no Python loop over the characters. Only for a document
    `json.loads` accepted: on an unterminated string the pattern would rescan to the end.
    """
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return data.count(b"[") + data.count(b"{")  # an upper bound, within the limit
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    codes = torch.frombuffer(bytearray(brackets), dtype=torch.uint8)
    opens = (codes == ord("[")) | (codes == ord("{"))
    steps = opens.to(torch.int32) * 2 - 1
    return int(steps.cumsum(0, dtype=torch.int32).max())


def parse_json(data: bytes) -> Any:
    """The JSON document in `data` (UTF-8, nested at most `MAX_JSON_DEPTH` deep);
    INVALID_ARGUMENT naming the body otherwise."""
    too_deep = f"body: JSON nested deeper than {MAX_JSON_DEPTH} levels of arrays and objects"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidArgument(f"body: not valid JSON (not UTF-8: {error})") from None
    try:
        document = json.loads(text)
    except RecursionError:  # deeper than the parser's own limit (about 1,000 levels)
        raise InvalidArgument(too_deep) from None
    except ValueError as error:  # JSONDecodeError, or an integer of over 4,300 digits
        raise InvalidArgument(f"body: not valid JSON ({error})") from None
    if json_depth(data) > MAX_JSON_DEPTH:
        raise InvalidArgument(too_deep)
    return document


def json_bytes(payload: Any) -> bytes:
    """Compact JSON (no NaN: non-finite numbers were turned into null before)."""
    return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()
