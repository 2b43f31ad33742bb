"""Replays the kept fuzz corpus (`tests/fuzz/corpus/`, written by `tests.support.fuzz_cases`)
against a real server: every case answers OK or a user-error status, never INTERNAL or UNKNOWN
over gRPC, never a 5xx over REST, and the server lives on."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support.rest import RestTestServer, rest_server
from tests.support.wire import stub

CORPUS = Path(__file__).resolve().parent / "corpus"
USER_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def _cases(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (CORPUS / name).read_text().splitlines() if line]


GRPC_CASES = _cases("grpc.jsonl")
REST_CASES = _cases("rest.jsonl")


@pytest.fixture(scope="module")
def server() -> Iterator[RestTestServer]:
    with rest_server() as running:
        yield running


def test_the_corpus_is_large_and_covers_both_surfaces() -> None:
    assert len(GRPC_CASES) >= 250 and len(REST_CASES) >= 150
    notes = {case["note"] for case in GRPC_CASES + REST_CASES}
    for finding in ("update with an infinite gradient norm", "T = 1 full form",
                    "unknown top-level field 30", "JSON nested 5,000 deep",
                    "text/plain from a foreign origin, apply_update"):  # fmt: skip
        assert finding in notes


@pytest.mark.parametrize("case", GRPC_CASES, ids=[c["note"] for c in GRPC_CASES])
def test_grpc_case(server: RestTestServer, case: dict[str, Any]) -> None:
    channel = grpc.insecure_channel(server.target)
    try:
        call = channel.unary_unary(f"/advantage.v1.AdvantageService/{case['rpc']}")
        if case["rpc"] == "GetParameters":
            call = channel.unary_stream(f"/advantage.v1.AdvantageService/{case['rpc']}")
        try:
            result = call(base64.b64decode(case["payload"]), timeout=60)
            if case["rpc"] == "GetParameters":
                list(result)
        except grpc.RpcError as error:
            assert error.code() in USER_ERRORS, (error.code(), error.details())
            assert error.details()
    finally:
        channel.close()


@pytest.mark.parametrize("case", REST_CASES, ids=[c["note"] for c in REST_CASES])
def test_rest_case(server: RestTestServer, case: dict[str, Any]) -> None:
    body = (
        base64.b64decode(case["body_b64"])
        if "body_b64" in case
        else None
        if case["body"] is None
        else case["body"].encode()
    )
    with httpx.Client(base_url=server.url, timeout=60) as http:
        response = http.request(case["method"], case["path"], content=body, headers=case["headers"])
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["message"]


def test_the_server_lives_on_after_the_corpus(server: RestTestServer) -> None:
    assert stub(server.target).ListModels(pb.ListModelsRequest(), timeout=30).models
