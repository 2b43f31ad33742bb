"""Bearer-token authentication: gRPC (every RPC kind), REST /v1/, and what stays open."""

from __future__ import annotations

import grpc
import httpx
import pytest
from advantage_client import AdvantageClient, UnauthenticatedError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from service.cli import build_settings
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.settings import Settings
from tests.conftest import running_server
from tests.server.wire import full_trajectory, random_batch, rpc_error, stub

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def secured():
    with running_server(Settings(auth_token=TOKEN), rest=True) as server:
        yield server


def test_every_rpc_kind_is_refused_without_the_token(secured) -> None:
    api = stub(secured.target)
    compute = pb.ComputeAdvantageRequest(trajectory=full_trajectory(random_batch()))
    calls = [
        (api.ListModels, pb.ListModelsRequest()),
        (api.ComputeAdvantage, compute),
        (lambda request, timeout: list(api.GetParameters(request, timeout=timeout)),
         pb.GetParametersRequest()),
        (api.SetParameters, iter([pb.ParameterChunk(model_name="demo")])),
    ]  # fmt: skip
    for call, request in calls:
        error = rpc_error(call, request)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "authorization: missing" in error.details()


def test_a_wrong_token_is_refused_and_the_right_one_works(secured) -> None:
    api = stub(secured.target)
    wrong = (("authorization", "Bearer nope"),)
    try:
        api.ListModels(pb.ListModelsRequest(), metadata=wrong, timeout=10)
        raise AssertionError("a wrong token was accepted")
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "not valid" in error.details()
    right = (("authorization", f"Bearer {TOKEN}"),)
    assert api.ListModels(pb.ListModelsRequest(), metadata=right, timeout=10).models


def test_python_client_sends_its_token(secured) -> None:
    batch = random_batch((2,), steps=5)
    kwargs = {
        "reward": batch.reward.numpy(),
        "done": batch.done.numpy(),
        "terminated": batch.terminated.numpy(),
        "observation": batch.observation.numpy(),
        "next_observation": batch.next_observation.numpy(),
    }
    with AdvantageClient(secured.target, timeout=30, token=TOKEN) as client:
        assert client.compute_advantage(**kwargs).advantage.shape == (2, 5)
        version, tensors = client.get_parameters()
        assert version == 0 and tensors
    with (
        AdvantageClient(secured.target, timeout=30) as client,
        pytest.raises(UnauthenticatedError, match="authorization"),
    ):
        client.compute_advantage(**kwargs)


def test_health_and_reflection_stay_open(secured) -> None:
    channel = grpc.insecure_channel(secured.target)
    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    assert (
        "advantage.v1.AdvantageService" in ProtoReflectionDescriptorDatabase(channel).get_services()
    )


def test_rest_v1_routes_need_the_token_and_probes_do_not(secured) -> None:
    with httpx.Client(base_url=secured.url, timeout=30) as http:
        refused = http.get("/v1/models")
        assert refused.status_code == 401
        assert refused.json()["code"] == "UNAUTHENTICATED"
        allowed = http.get("/v1/models", headers={"authorization": f"Bearer {TOKEN}"})
        assert allowed.status_code == 200 and allowed.json()["models"]
        assert http.get("/healthz").status_code == 200
        assert http.get("/metrics").status_code == 200


def test_token_comes_from_a_file_or_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("ADVANTAGE_AUTH_TOKEN", raising=False)
    assert build_settings(["serve"]).auth_token is None
    monkeypatch.setenv("ADVANTAGE_AUTH_TOKEN", "from-env")
    assert build_settings(["serve"]).auth_token == "from-env"
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert build_settings(["serve", "--auth-token-file", str(token_file)]).auth_token == "from-file"
    token_file.write_text("")
    with pytest.raises(ValueError, match="empty"):
        build_settings(["serve", "--auth-token-file", str(token_file)])
