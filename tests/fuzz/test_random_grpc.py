"""Random malformed requests: the server answers each with a user-error status, never INTERNAL."""

from __future__ import annotations

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support.wire import full_trajectory, random_batch, rpc_error, stub

USER_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
FIELDS = ["reward", "done", "terminated", "state_value", "next_state_value", "action",
          "sample_log_prob", "log_prob"]  # fmt: skip

tensors = st.builds(
    pb.Tensor,
    dtype=st.integers(min_value=0, max_value=9),
    shape=st.lists(st.integers(min_value=-1, max_value=7), max_size=4),
    raw_data=st.binary(max_size=128),
)


@st.composite
def mangled_requests(draw: st.DrawFn) -> pb.ComputeAdvantageRequest:
    """A valid request with a few fields replaced by random tensors or removed."""
    trajectory = full_trajectory(random_batch((2,), steps=4, seed=draw(st.integers(0, 3))))
    for field in draw(st.lists(st.sampled_from([*FIELDS, "observation", "next_observation"]),
                               min_size=1, max_size=3)):  # fmt: skip
        if field in ("observation", "next_observation"):
            getattr(trajectory, field)[draw(st.sampled_from(["observation", "x"]))].CopyFrom(
                draw(tensors)
            )
        elif draw(st.booleans()):
            trajectory.ClearField(field)
        else:
            getattr(trajectory, field).CopyFrom(draw(tensors))
    trajectory.form = draw(st.integers(0, 3))
    estimator = draw(st.sampled_from(["td0", "td1", "td_lambda", "gae", "vtrace"]))
    request = pb.ComputeAdvantageRequest(trajectory=trajectory)
    getattr(request, estimator).SetInParent()
    return request


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(request=mangled_requests())
def test_malformed_requests_get_user_error_statuses(grpc_target: str, request) -> None:
    try:
        stub(grpc_target).ComputeAdvantage(request, timeout=30)
    except grpc.RpcError as error:
        assert error.code() in USER_ERRORS, (error.code(), error.details())
        assert error.details(), "a user error names what is wrong"


def test_garbage_bytes_are_not_a_request(grpc_target: str) -> None:
    channel = grpc.insecure_channel(grpc_target)
    call = channel.unary_unary(
        "/advantage.v1.AdvantageService/ComputeAdvantage",
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )
    error = rpc_error(call, b"\xff\xfe\x00garbage")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid ComputeAdvantageRequest" in error.details()
    assert stub(grpc_target).ListModels(pb.ListModelsRequest()).models  # the server lives on


def test_garbage_parameter_chunks_are_invalid_argument(grpc_target: str) -> None:
    channel = grpc.insecure_channel(grpc_target)
    call = channel.stream_unary(
        "/advantage.v1.AdvantageService/SetParameters",
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )
    error = rpc_error(call, iter([b"\xff\xfe\x00garbage"]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "chunk 0" in error.details() and "ParameterChunk" in error.details()
