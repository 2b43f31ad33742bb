"""The sync client against a real server running the demo model (the `grpc_target` fixture)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import torch
from advantage_client import (
    GAE,
    TD0,
    TD1,
    AdvantageClient,
    AdvantageResult,
    AdvantageServiceError,
    DeadlineExceededError,
    EstimatorOptions,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    TDLambda,
    UnavailableError,
    VTrace,
)

from service.settings import Settings
from tests.support.client_data import OBS_DIM, Batch, make_batch, to_tensordict, torchrl_reference
from tests.support.servers import running_server

# Knobs away from the model's defaults, so that the test proves they reach the server.
KNOBS: dict[str, dict[str, Any]] = {
    "gae": {"gamma": 0.9, "lmbda": 0.8},
    "td0": {"gamma": 0.9},
    "td1": {"gamma": 0.9},
    "td_lambda": {"gamma": 0.9, "lmbda": 0.8},
    "vtrace": {"gamma": 0.9, "rho_thresh": 1.2, "c_thresh": 0.9},
}
CLASSES: dict[str, type[EstimatorOptions]] = {
    "gae": GAE,
    "td0": TD0,
    "td1": TD1,
    "td_lambda": TDLambda,
    "vtrace": VTrace,
}
OPTIONS = {name: CLASSES[name](**knobs) for name, knobs in KNOBS.items()}
ESTIMATORS = list(KNOBS)


@pytest.fixture
def client(grpc_target: str) -> Iterator[AdvantageClient]:
    with AdvantageClient(grpc_target, timeout=60) as c:
        yield c


def _target_log_prob(batch: Batch) -> np.ndarray:
    """A current-policy log-probability distinct from the behaviour one (V-trace's log π)."""
    shift = 0.2 * np.cos(np.arange(batch.reward.size)).reshape(batch.reward.shape)
    return (batch.sample_log_prob + shift).astype(batch.reward.dtype)


def _vtrace_arrays(batch: Batch) -> dict[str, Any]:
    return {**batch.arrays(with_vtrace=True), "log_prob": _target_log_prob(batch)}


def _arrays(batch: Batch, estimator: str) -> dict[str, Any]:
    return _vtrace_arrays(batch) if estimator == "vtrace" else batch.arrays()


def _reference(estimator: str, batch: Batch, state_value: Any, next_state_value: Any) -> Any:
    """TorchRL's (advantage, value_target) with the test's knobs and the given values."""
    knobs = dict(KNOBS[estimator])
    return torchrl_reference(
        estimator,
        reward=batch.reward,
        done=batch.done,
        terminated=batch.terminated,
        state_value=np.asarray(state_value),
        next_state_value=np.asarray(next_state_value),
        gamma=knobs.pop("gamma"),
        log_pi=_target_log_prob(batch),
        log_mu=batch.sample_log_prob,
        **knobs,
    )


# ---- models ------------------------------------------------------------------------------------


def test_list_and_get_model(client: AdvantageClient) -> None:
    models = client.list_models()
    assert [m.name for m in models] == ["demo"]
    demo = client.get_model("demo")
    assert demo == models[0] == client.get_model()
    assert demo.input_keys == ("observation",)
    assert demo.inputs[0].shape == (OBS_DIM,) and demo.inputs[0].dtype == "float32"
    assert demo.has_value_network and demo.has_actor_network
    assert demo.action.distribution == "categorical" and demo.action.num_actions == 2
    assert 0.0 < demo.gamma <= 1.0 and 0.0 < demo.lmbda <= 1.0


def test_unknown_model_is_not_found(client: AdvantageClient) -> None:
    with pytest.raises(NotFoundError) as info:
        client.get_model("nope")
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    assert "nope" in info.value.message
    batch = make_batch()
    with pytest.raises(AdvantageServiceError) as info:
        client.compute_advantage(model="nope", **batch.arrays())
    assert info.value.code == grpc.StatusCode.NOT_FOUND


# ---- numpy -------------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_numpy_matches_torchrl(client: AdvantageClient, estimator: str) -> None:
    batch = make_batch(seed=1)
    result = client.compute_advantage(estimator=OPTIONS[estimator], **_arrays(batch, estimator))
    assert isinstance(result, AdvantageResult)
    for name in ("advantage", "value_target", "state_value", "next_state_value"):
        value = getattr(result, name)
        assert isinstance(value, np.ndarray), name
        assert value.shape == batch.reward.shape and value.dtype == np.float32, name
    assert result.model_name == "demo"
    assert not np.any(result.next_state_value[batch.terminated])  # 0 at terminated steps
    advantage, value_target = _reference(
        estimator, batch, result.state_value, result.next_state_value
    )
    np.testing.assert_allclose(result.advantage, advantage, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.value_target, value_target, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_given_state_values_are_used_not_recomputed(
    client: AdvantageClient, estimator: str
) -> None:
    batch = make_batch(batch_shape=(2, 3), steps=5, seed=2, dtype=np.float64)
    rng = np.random.default_rng(3)
    values = {
        "state_value": rng.normal(size=batch.reward.shape),
        "next_state_value": rng.normal(size=batch.reward.shape),
    }
    arrays = _arrays(batch, estimator)
    del arrays["observation"], arrays["next_observation"]
    if estimator == "vtrace":
        del arrays["action"]  # log_prob given: no network at all
    result = client.compute_advantage(estimator=OPTIONS[estimator], **arrays, **values)
    assert result.state_value is None and result.next_state_value is None
    assert result.advantage.dtype == np.float64 and result.advantage.shape == (2, 3, 5)
    advantage, value_target = _reference(estimator, batch, **values)
    # Not tighter: TorchRL forms γ·(1 − done) in float32 (default dtype) even for float64 inputs.
    np.testing.assert_allclose(result.advantage, advantage, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(result.value_target, value_target, rtol=1e-6, atol=1e-6)


def test_numpy_results_are_read_only(client: AdvantageClient) -> None:
    result = client.compute_advantage(**make_batch().arrays())
    assert not result.advantage.flags.writeable
    result.advantage.copy()[0, 0] = 1.0


def test_per_step_gamma(client: AdvantageClient) -> None:
    batch = make_batch(seed=4)
    gamma = np.linspace(0.5, 1.0, batch.reward.size).reshape(batch.reward.shape)
    result = client.compute_advantage(estimator=TD0(gamma=gamma), **batch.arrays())
    expected = (
        batch.reward
        + gamma.astype(np.float32) * ~batch.terminated * result.next_state_value
        - result.state_value
    )
    np.testing.assert_allclose(result.advantage, expected, rtol=1e-5, atol=1e-6)


def test_average_gae_standardises_the_advantage(client: AdvantageClient) -> None:
    batch = make_batch(seed=5)
    raw = client.compute_advantage(**batch.arrays())
    averaged = client.compute_advantage(estimator=GAE(average_gae=True), **batch.arrays())
    expected = (raw.advantage - raw.advantage.mean()) / max(raw.advantage.std(ddof=1), 1e-4)
    np.testing.assert_allclose(averaged.advantage, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(averaged.value_target, raw.value_target, rtol=1e-6)


def test_vtrace_with_the_servers_actor(client: AdvantageClient) -> None:
    batch = make_batch(seed=6)
    result = client.compute_advantage(estimator="vtrace", **batch.arrays(with_vtrace=True))
    assert np.isfinite(result.advantage).all() and np.isfinite(result.value_target).all()


def test_vtrace_without_behaviour_log_prob_is_refused(client: AdvantageClient) -> None:
    with pytest.raises(AdvantageServiceError) as info:
        client.compute_advantage(estimator="vtrace", **make_batch().arrays())
    assert info.value.code in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert isinstance(info.value, (InvalidArgumentError, FailedPreconditionError))
    assert "sample_log_prob" in info.value.message


# ---- compact form --------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ["gae", "td1", "vtrace"])
@pytest.mark.parametrize("batch_shape", [(4,), (2, 3)])
def test_compact_equals_full(
    client: AdvantageClient, estimator: str, batch_shape: tuple[int, ...]
) -> None:
    batch = make_batch(batch_shape=batch_shape, steps=7, seed=7)
    arrays = batch.arrays(with_vtrace=True) if estimator == "vtrace" else batch.arrays()
    full = client.compute_advantage(estimator=estimator, **arrays)
    compact = client.compute_advantage(estimator=estimator, form="compact", **arrays)
    for name in ("advantage", "value_target", "state_value", "next_state_value"):
        np.testing.assert_allclose(
            getattr(compact, name), getattr(full, name), rtol=1e-6, atol=1e-6, err_msg=name
        )


# ---- torch and TensorDict ----------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_torch_in_torch_out(client: AdvantageClient, estimator: str) -> None:
    batch = make_batch(seed=8)
    arrays = _arrays(batch, estimator)
    expected = client.compute_advantage(estimator=OPTIONS[estimator], **arrays)
    tensors = {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}
    result = client.compute_advantage(estimator=OPTIONS[estimator], **tensors)
    for name in ("advantage", "value_target", "state_value", "next_state_value"):
        value = getattr(result, name)
        assert isinstance(value, torch.Tensor) and value.dtype == torch.float32, name
        np.testing.assert_array_equal(value.numpy(), getattr(expected, name), err_msg=name)
    result.advantage.add_(1.0)  # writable


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("form", ["full", "compact"])
def test_tensordict_in_tensordict_out(client: AdvantageClient, estimator: str, form: str) -> None:
    batch = make_batch(seed=9)
    td = to_tensordict(batch)
    options = OPTIONS[estimator]
    if estimator == "vtrace":
        options = VTrace(gamma=0.9)  # log π comes from the server's actor
    keys_before = set(td.keys(include_nested=True, leaves_only=True))
    out = client.compute_advantage(td, estimator=options, form=form)
    assert set(td.keys(include_nested=True, leaves_only=True)) == keys_before  # not mutated
    assert out["observation"] is td["observation"]
    for key in ("advantage", "value_target", "state_value", ("next", "state_value")):
        assert out[key].shape == (3, 6, 1), key
    expected = client.compute_advantage(
        estimator=options,
        **(batch.arrays(with_vtrace=True) if estimator == "vtrace" else batch.arrays()),
    )
    np.testing.assert_allclose(
        out["advantage"].squeeze(-1).numpy(), expected.advantage, rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(
        out["next", "state_value"].squeeze(-1).numpy(), expected.next_state_value, atol=1e-6
    )
    if estimator != "vtrace":
        advantage, value_target = _reference(
            estimator, batch, expected.state_value, expected.next_state_value
        )
        np.testing.assert_allclose(out["value_target"].squeeze(-1), value_target, atol=1e-5)
        np.testing.assert_allclose(out["advantage"].squeeze(-1), advantage, atol=1e-5)


def test_tensordict_round_trip_reuses_state_values(client: AdvantageClient) -> None:
    td = to_tensordict(make_batch(seed=10))
    first = client.compute_advantage(td)
    # The output carries both state values: a second call sends them (no observations needed)...
    second = client.compute_advantage(first.exclude("observation", ("next", "observation")))
    torch.testing.assert_close(second["advantage"], first["advantage"])
    # ...unless told to recompute them.
    third = client.compute_advantage(first, recompute_values=True)
    torch.testing.assert_close(third["advantage"], first["advantage"])


# ---- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"reward": np.zeros((3, 6), np.int64)}, "trajectory.reward"),
        ({"reward": np.float32(0.0)}, "trajectory.reward"),
        ({"done": np.zeros((3, 5), bool)}, "trajectory.done"),
        ({"observation": np.zeros((3, 6, 5), np.float32)}, "trajectory.observation"),
    ],
)
def test_invalid_argument_names_the_field(
    client: AdvantageClient, change: dict[str, Any], field: str
) -> None:
    arrays: dict[str, Any] = {**make_batch().arrays(), **change}
    with pytest.raises(InvalidArgumentError) as info:
        client.compute_advantage(**arrays)
    error = info.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in error.message
    assert field in str(error) and "INVALID_ARGUMENT" in str(error)
    assert isinstance(error, ValueError)  # catchable as a plain ValueError too


def test_deadline_exceeded(grpc_target: str) -> None:
    # ~65k steps keep the demo server busy for tens of ms: 10x the 5 ms deadline.
    arrays = make_batch(batch_shape=(128,), steps=512).arrays()
    with AdvantageClient(grpc_target, timeout=0.005) as hasty:  # the client-wide default
        with pytest.raises(DeadlineExceededError) as info:
            hasty.compute_advantage(**arrays)
        assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert isinstance(info.value, TimeoutError)
        assert hasty.compute_advantage(timeout=60, **arrays).advantage.shape == (128, 512)
    with AdvantageClient(grpc_target) as patient, pytest.raises(DeadlineExceededError):
        patient.compute_advantage(timeout=0.005, **arrays)  # a per-call deadline


def test_client_side_size_limit(grpc_target: str) -> None:
    batch = make_batch(batch_shape=(64,), steps=64)
    small = AdvantageClient(grpc_target, max_message_mb=0.01, timeout=30)
    with small, pytest.raises(ResourceExhaustedError) as info:
        small.compute_advantage(**batch.arrays())
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_unreachable_server_is_unavailable() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with (
        AdvantageClient(f"127.0.0.1:{port}", timeout=10) as c,
        pytest.raises(UnavailableError) as info,
    ):
        c.list_models()
    assert info.value.code == grpc.StatusCode.UNAVAILABLE


def test_argument_errors_are_raised_before_sending() -> None:
    batch = make_batch()
    with AdvantageClient("127.0.0.1:1", timeout=0.01) as c:  # nothing there: no RPC happens
        with pytest.raises(TypeError, match="unexpected keyword argument 'lmbda'"):
            c.compute_advantage(estimator=TD0(lmbda=0.9), **batch.arrays())  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="takes no 'lmbda'"):  # the deprecated form
            c.compute_advantage(estimator="td0", lmbda=0.9, **batch.arrays())
        with pytest.raises(ValueError, match="unknown estimator"):
            c.compute_advantage(estimator="a2c", **batch.arrays())
        with pytest.raises(TypeError, match="needs done"):
            c.compute_advantage(reward=batch.reward)
    with pytest.raises(ValueError, match="max_message_mb"):
        AdvantageClient("127.0.0.1:1", max_message_mb=0)


def test_errors_pickle(client: AdvantageClient) -> None:
    import pickle

    with pytest.raises(NotFoundError) as info:
        client.get_model("nope")
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is NotFoundError
    assert (copy.code, copy.message) == (info.value.code, info.value.message)


def test_a_read_token_cannot_write_and_gets_permission_denied() -> None:
    batch = make_batch()
    settings = Settings(auth_token="reader", admin_token="writer", rest_port=0)
    with running_server(settings) as server:
        with AdvantageClient(server.target, timeout=60, token="reader") as reader:
            reader.compute_loss(**batch.arrays(with_vtrace=True))  # a read: allowed
            with pytest.raises(PermissionDeniedError) as refused:
                reader.compute_loss(apply_update=True, **batch.arrays(with_vtrace=True))
            assert isinstance(refused.value, PermissionError)
        with AdvantageClient(server.target, timeout=60, token="writer") as writer:
            assert writer.compute_loss(apply_update=True, **batch.arrays(with_vtrace=True)).updated
