"""Bearer-token authentication: gRPC (every RPC kind), REST /v1/, what stays open, and the
write scope (admin token) for apply_update and SetParameters."""

from __future__ import annotations

import grpc
import httpx
import pytest
from advantage_client import AdvantageClient, UnauthenticatedError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from service.api.auth import BearerToken, Scope, require_write, token_auth
from service.cli import build_settings
from service.errors import PermissionDenied, Unauthenticated
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.settings import Settings
from tests.support.servers import running_server
from tests.support.wire import full_trajectory, random_batch, rpc_error, stub

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


# --- Scopes: a read token and an admin (write) token ----------------------------------------

READ, ADMIN = "read-t0ken", "admin-t0ken"


def bearer(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


@pytest.fixture(scope="module")
def scoped():
    with running_server(Settings(auth_token=READ, admin_token=ADMIN), rest=True) as server:
        yield server


def _version(api, token: str) -> int:
    chunks = api.GetParameters(pb.GetParametersRequest(), metadata=bearer(token), timeout=30)
    return next(iter(chunks)).parameter_version


def _update(apply_update: bool = True) -> pb.ComputeLossRequest:
    return pb.ComputeLossRequest(
        trajectory=full_trajectory(random_batch((2,), steps=5)), apply_update=apply_update
    )


def _grpc_code(call, request, token: str | None) -> grpc.StatusCode:
    try:
        call(request, metadata=bearer(token), timeout=30)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def test_read_token_reads_but_cannot_update_over_grpc(scoped) -> None:
    api = stub(scoped.target)
    before = _version(api, READ)
    reply = api.ComputeLoss(_update(False), metadata=bearer(READ), timeout=60)
    assert not reply.updated and reply.loss == reply.loss
    error = rpc_error(lambda r, timeout: api.ComputeLoss(r, metadata=bearer(READ), timeout=timeout),
                      _update())  # fmt: skip
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "apply_update" in error.details() and "admin token" in error.details()
    assert _grpc_code(api.ComputeLoss, _update(), None) == grpc.StatusCode.UNAUTHENTICATED
    assert _grpc_code(api.ComputeLoss, _update(), "nope") == grpc.StatusCode.UNAUTHENTICATED
    assert _version(api, READ) == before  # nothing was applied


def test_admin_token_updates_and_reads_over_grpc(scoped) -> None:
    api = stub(scoped.target)
    before = _version(api, ADMIN)
    reply = api.ComputeLoss(_update(), metadata=bearer(ADMIN), timeout=60)
    assert reply.updated and reply.new_parameter_version == before + 1
    assert api.ListModels(pb.ListModelsRequest(), metadata=bearer(ADMIN), timeout=10).models


def test_set_parameters_needs_the_admin_token(scoped) -> None:
    api = stub(scoped.target)
    request = pb.GetParametersRequest(prefixes=["actor_network."])
    chunks = list(api.GetParameters(request, metadata=bearer(READ), timeout=30))
    version = chunks[0].parameter_version
    for token, code in ((READ, grpc.StatusCode.PERMISSION_DENIED),
                        (None, grpc.StatusCode.UNAUTHENTICATED)):  # fmt: skip
        assert _grpc_code(api.SetParameters, iter(chunks), token) == code
    assert _version(api, READ) == version
    reply = api.SetParameters(iter(chunks), metadata=bearer(ADMIN), timeout=30)
    assert reply.parameter_version == version + 1 and reply.tensors_updated > 0


def test_a_malformed_update_request_is_still_invalid_argument(scoped) -> None:
    channel = grpc.insecure_channel(scoped.target)
    raw = channel.unary_unary("/advantage.v1.AdvantageService/ComputeLoss")
    with pytest.raises(grpc.RpcError) as caught:
        raw(b"\xff\xff\xff", metadata=bearer(READ), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_rest_writes_need_the_admin_token(scoped) -> None:
    with httpx.Client(base_url=scoped.url, timeout=60) as http:
        sample = http.get("/debug/sample", headers=dict(bearer(READ)))
        assert sample.status_code == 200, sample.text
        body = {**sample.json(), "loss": "a2c"}
        read = http.post("/v1/loss", json=body, headers=dict(bearer(READ)))
        assert read.status_code == 200 and read.json()["updated"] is False
        body["apply_update"] = True
        refused = http.post("/v1/loss", json=body, headers=dict(bearer(READ)))
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "PERMISSION_DENIED"
        assert "apply_update" in refused.json()["message"]
        assert http.post("/v1/loss", json=body).status_code == 401
        updated = http.post("/v1/loss", json=body, headers=dict(bearer(ADMIN)))
        assert updated.status_code == 200, updated.text
        assert updated.json()["updated"] is True


def test_debug_sample_needs_a_token_and_the_rest_stays_open(scoped) -> None:
    with httpx.Client(base_url=scoped.url, timeout=60) as http:
        refused = http.get("/debug/sample")
        assert refused.status_code == 401 and refused.json()["code"] == "UNAUTHENTICATED"
        assert http.get("/debug/sample", headers=dict(bearer("nope"))).status_code == 401
        assert http.get("/debug/sample", headers=dict(bearer(ADMIN))).status_code == 200
        for path in ("/debug", "/docs", "/openapi.json", "/healthz", "/readyz", "/metrics"):
            assert http.get(path).status_code == 200, path


def test_one_token_still_allows_writes_with_a_warning(secured, caplog) -> None:
    api = stub(secured.target)
    reply = api.ComputeLoss(_update(), metadata=bearer(TOKEN), timeout=60)
    assert reply.updated
    with caplog.at_level("WARNING", logger="service.api.auth"):
        assert token_auth(Settings(auth_token=TOKEN)) is not None
    assert "writes separately" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="service.api.auth"):
        token_auth(Settings(auth_token=READ, admin_token=ADMIN))
    assert "writes separately" not in caplog.text
    assert token_auth(Settings()) is None


def test_admin_token_alone_leaves_reads_open_and_guards_writes() -> None:
    with running_server(Settings(admin_token=ADMIN), rest=True) as server:
        api = stub(server.target)
        assert api.ListModels(pb.ListModelsRequest(), timeout=10).models
        assert _grpc_code(api.ListModels, pb.ListModelsRequest(), "nope") == (
            grpc.StatusCode.UNAUTHENTICATED
        )
        assert _grpc_code(api.ComputeLoss, _update(), None) == grpc.StatusCode.UNAUTHENTICATED
        assert _grpc_code(api.ComputeLoss, _update(), ADMIN) == grpc.StatusCode.OK
        with httpx.Client(base_url=server.url, timeout=60) as http:
            body = {**http.get("/debug/sample").json(), "loss": "a2c", "apply_update": True}
            assert http.post("/v1/loss", json=body).status_code == 401
            assert http.post("/v1/loss", json=body, headers=dict(bearer(ADMIN))).status_code == 200


def test_scopes_unit() -> None:
    both = BearerToken(READ, ADMIN)
    assert both.check(f"Bearer {READ}") is Scope.READ
    assert both.check(f"Bearer {ADMIN}") is Scope.WRITE
    assert BearerToken(READ).check(f"Bearer {READ}") is Scope.WRITE
    assert BearerToken(None, ADMIN).check(None) is Scope.ANONYMOUS
    for value in (None, "Bearer", f"bearer {READ}", f"Bearer {READ} ", ADMIN):
        with pytest.raises(Unauthenticated):
            both.check(value)
    require_write(Scope.WRITE)
    with pytest.raises(PermissionDenied):
        require_write(Scope.READ)
    with pytest.raises(Unauthenticated):
        require_write(Scope.ANONYMOUS)
    with pytest.raises(ValueError):
        BearerToken(READ, READ)


def test_admin_token_comes_from_a_file_or_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("ADVANTAGE_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("ADVANTAGE_AUTH_TOKEN", raising=False)
    assert build_settings(["serve"]).admin_token is None
    monkeypatch.setenv("ADVANTAGE_ADMIN_TOKEN", "admin-env")
    assert build_settings(["serve"]).admin_token == "admin-env"
    token_file = tmp_path / "admin"
    token_file.write_text("admin-file\n")
    settings = build_settings(["serve", "--admin-token-file", str(token_file)])
    assert settings.admin_token == "admin-file"
    token_file.write_text("")
    with pytest.raises(ValueError, match="empty"):
        build_settings(["serve", "--admin-token-file", str(token_file)])
    monkeypatch.setenv("ADVANTAGE_AUTH_TOKEN", "admin-env")
    with pytest.raises(ValueError, match="differ"):
        build_settings(["serve"])
    with pytest.raises(ValueError, match="cannot read"):
        build_settings(["serve", "--admin-token-file", str(tmp_path / "missing")])
