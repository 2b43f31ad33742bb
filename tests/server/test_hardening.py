"""Regression tests for the hardening issue: writes are transactional, user errors never answer
INTERNAL, limits are enforced before work. Each test fails on the code before the fix."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace

import grpc
import pytest
import torch
from torch import nn

from service.errors import Cancelled, DeadlineExceeded
from service.models.demo import demo_manifest, demo_model, demo_networks
from service.models.manifest import OptimizerSpec
from service.models.model import Model
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.runtime.call import CallState
from service.runtime.parameters import named_tensors, replace_parameters
from service.runtime.update import apply_update, optimizer_of
from service.server import create_server
from service.settings import Settings
from tests.support.servers import running_server
from tests.support.wire import (
    compact_trajectory,
    full_trajectory,
    parameters,
    random_batch,
    rpc_error,
    stub,
    tensor,
)


def _model_info(api, name: str = "") -> pb.ModelInfo:
    return api.GetModel(pb.GetModelRequest(model_name=name), timeout=30).model


def _update(batch, **fields) -> pb.ComputeLossRequest:
    return pb.ComputeLossRequest(trajectory=full_trajectory(batch), apply_update=True, **fields)


# ---- updates are transactional ----------------------------------------------------------------


def test_an_update_with_an_infinite_gradient_norm_is_refused_and_changes_nothing() -> None:
    with running_server() as server:
        api = stub(server.target)
        version, before = parameters(api)
        batch = random_batch((4,), 8)
        batch.sample_log_prob = torch.full_like(batch.reward, -50.0)  # ratio e^50: grad overflow
        request = _update(
            batch,
            advantage=tensor(-torch.ones_like(batch.reward)),
            value_target=tensor(torch.zeros_like(batch.reward)),
        )
        error = rpc_error(api.ComputeLoss, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "gradient norm is not finite" in error.details()
        after_version, after = parameters(api)
        assert after_version == version
        assert all(torch.equal(before[k], after[k]) for k in before)
        # The model still answers (it used to be corrupted with NaN weights).
        api.ComputeAdvantage(
            pb.ComputeAdvantageRequest(trajectory=full_trajectory(batch)), timeout=30
        )


def test_an_update_that_would_make_parameters_non_finite_is_rolled_back() -> None:
    value, actor = demo_networks()
    # SGD with lr 1e38 and gradients of about 1e6: the step overflows float32 to ±inf.
    manifest = replace(demo_manifest(), optimizer=OptimizerSpec(name="sgd", lr=1e38))
    model = Model(manifest, torch.device("cpu"), value_network=value, actor_network=actor)
    with running_server(models={"demo": model}) as server:
        api = stub(server.target)
        version, before = parameters(api)
        batch = random_batch((4,), 8)
        request = _update(
            batch,
            advantage=tensor(torch.full_like(batch.reward, 1e6)),
            value_target=tensor(torch.full_like(batch.reward, 1e6)),
        )
        error = rpc_error(api.ComputeLoss, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "non-finite" in error.details() and "nothing was applied" in error.details()
        after_version, after = parameters(api)
        assert after_version == version
        assert all(torch.equal(before[k], after[k]) for k in before)
        # The optimizer's state was restored too: a sane second server-side step is possible
        # only if nothing of the refused one stuck (SGD without momentum keeps no state).
        assert model.optimizer is not None and not model.optimizer.state


def test_set_parameters_refuses_nan_and_inf() -> None:
    with running_server() as server:
        api = stub(server.target)
        version, before = parameters(api)
        name = next(k for k in before if k.endswith("bias"))
        for bad in (float("nan"), float("inf")):
            poisoned = before[name].clone()
            poisoned[0] = bad
            chunk = pb.ParameterChunk(model_name="demo")
            chunk.tensors.append(
                pb.NamedTensor(
                    name=name, shape=list(poisoned.shape), data=tensor(poisoned.flatten())
                )
            )
            error = rpc_error(
                lambda request, timeout: api.SetParameters(iter([request]), timeout=timeout), chunk
            )
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert name in error.details() and "finite" in error.details()
        assert parameters(api)[0] == version


class _SlowValue(nn.Module):
    """The demo value network, slowed down: each call sleeps `seconds` (and says so)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.inner = demo_networks()[0]
        self.seconds = seconds
        self.calls = 0
        self.started = threading.Event()

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.started.set()
        time.sleep(self.seconds)
        return self.inner(observation)


def _model_with(value_network: nn.Module) -> Model:
    return Model(
        demo_manifest(),
        torch.device("cpu"),
        value_network=value_network,
        actor_network=demo_networks()[1],
    )


def test_an_update_past_its_deadline_is_not_committed() -> None:
    slow = _SlowValue(1.5)
    model = Model(
        demo_manifest(), torch.device("cpu"), value_network=slow, actor_network=demo_networks()[1]
    )
    with running_server(models={"demo": model}) as server:
        api = stub(server.target)
        request = _update(random_batch((2,), 4))
        with pytest.raises(grpc.RpcError) as caught:
            api.ComputeLoss(request, timeout=0.5)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # The worker thread finishes its forward pass after the deadline; it must not commit.
        assert server.server.admission.wait_idle(30)
        assert model.parameter_version == 0 and _model_info(api).parameter_version == 0
        # The same request with time to spare does commit (the path itself works).
        api.ComputeLoss(request, timeout=60)
        assert _model_info(api).parameter_version == 1


def test_replace_parameters_checks_the_caller_right_before_the_commit() -> None:
    model = demo_model(torch.device("cpu"))
    staged = {name: value.clone() + 1 for name, value in named_tensors(model).items()}
    cancelled = CallState()
    cancelled.cancel()
    with pytest.raises(Cancelled):
        replace_parameters(model, staged, None, cancelled)
    with pytest.raises(DeadlineExceeded):
        replace_parameters(model, staged, None, CallState(deadline=time.monotonic() - 1))
    assert model.parameter_version == 0
    assert replace_parameters(model, staged, None, CallState.with_timeout(60)) == 1


def test_a_set_parameters_stream_cut_by_its_deadline_is_not_committed() -> None:
    with running_server() as server:
        api = stub(server.target)
        version, before = parameters(api)
        name, value = next(iter(before.items()))

        def slow_stream():
            chunk = pb.ParameterChunk(model_name="demo")
            chunk.tensors.append(
                pb.NamedTensor(name=name, shape=list(value.shape), data=tensor(value.flatten() + 1))
            )
            yield chunk
            time.sleep(1.5)  # the deadline passes while the client is still sending

        with pytest.raises(grpc.RpcError) as caught:
            api.SetParameters(slow_stream(), timeout=0.5)
        assert caught.value.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)
        time.sleep(1.6)  # let the generator finish: nothing may be committed afterwards either
        assert server.server.admission.wait_idle(30)
        assert parameters(api)[0] == version


# ---- unknown fields, bad shapes and values: INVALID_ARGUMENT, never INTERNAL -----------------


def _raw_call(target: str, method: str, payload: bytes) -> grpc.RpcError:
    channel = grpc.insecure_channel(target)
    call = channel.unary_unary(f"/advantage.v1.AdvantageService/{method}")
    try:
        call(payload, timeout=30)
    except grpc.RpcError as error:
        return error
    finally:
        channel.close()
    raise AssertionError("expected an error")


def test_unknown_fields_are_refused_with_their_number(grpc_target: str) -> None:
    batch = random_batch((2,), 4)
    known = pb.ComputeLossRequest(trajectory=full_trajectory(batch)).SerializeToString()
    # Field 30, varint 1: what a newer client's new `loss` oneof member would look like.
    error = _raw_call(grpc_target, "ComputeLoss", known + b"\xf0\x01\x01")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown field number 30" in error.details()
    # An unknown knob inside the estimator message (GAE field 19).
    request = pb.ComputeAdvantageRequest(trajectory=full_trajectory(batch))
    request.gae.MergeFromString(b"\x98\x01\x01")
    error = _raw_call(grpc_target, "ComputeAdvantage", request.SerializeToString())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "gae: unknown field number 19" in error.details()


@pytest.mark.parametrize("form", ["full", "compact"])
def test_one_step_trajectories_are_answered(grpc_target: str, form: str) -> None:
    api = stub(grpc_target)
    batch = random_batch((3,), 1, seed=4)
    trajectory = full_trajectory(batch) if form == "full" else compact_trajectory(batch)
    reply = api.ComputeAdvantage(pb.ComputeAdvantageRequest(trajectory=trajectory), timeout=30)
    assert list(reply.advantage.shape) == [3, 1]
    # GAE on one step is TD(0): A = r + γ(1 − terminated)V(s′) − V(s), with the values returned.
    value = torch.frombuffer(bytearray(reply.state_value.raw_data), dtype=torch.float32)
    following = torch.frombuffer(bytearray(reply.next_state_value.raw_data), dtype=torch.float32)
    advantage = torch.frombuffer(bytearray(reply.advantage.raw_data), dtype=torch.float32)
    gamma = 0.99
    expected = batch.reward[:, 0] + gamma * (~batch.terminated[:, 0]) * following - value
    torch.testing.assert_close(advantage, expected, rtol=1e-6, atol=1e-6)
    if form == "full":
        api.ComputeLoss(pb.ComputeLossRequest(trajectory=trajectory), timeout=30)


def _reward_only(shape: list[int], raw: bytes = b"") -> pb.Trajectory:
    return pb.Trajectory(
        reward=pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=shape, raw_data=raw),
        done=pb.Tensor(dtype=pb.DTYPE_BOOL, shape=shape, raw_data=b"\0" * (len(raw) // 4)),
    )


@pytest.mark.parametrize(
    ("trajectory", "expected"),
    [
        (_reward_only([0, 2**62, 4]), "describes more than"),
        (_reward_only([1] * 64, b"\0" * 4), "64 dimensions"),
    ],
)
def test_absurd_shapes_are_invalid_arguments(grpc_target: str, trajectory, expected: str) -> None:
    api = stub(grpc_target)
    for call, request in (
        (api.ComputeAdvantage, pb.ComputeAdvantageRequest(trajectory=trajectory)),
        (api.ComputeLoss, pb.ComputeLossRequest(trajectory=trajectory)),
    ):
        error = rpc_error(call, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert "trajectory.reward" in error.details() and expected in error.details()


@pytest.mark.parametrize("shape", [(0, 4), (3, 0)])
def test_compute_loss_with_an_empty_batch_is_an_invalid_argument(grpc_target: str, shape) -> None:
    batch = random_batch(shape[:1], shape[1])
    error = rpc_error(
        stub(grpc_target).ComputeLoss, pb.ComputeLossRequest(trajectory=full_trajectory(batch))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "trajectory.reward: expected at least one step" in error.details()


def test_ppo_kl_behaviour_logits_with_the_wrong_number_of_actions(grpc_target: str) -> None:
    batch = random_batch((2,), 3)
    request = pb.ComputeLossRequest(trajectory=full_trajectory(batch), ppo_kl=pb.KLPENPPOLoss())
    request.behaviour_distribution["logits"].CopyFrom(tensor(torch.randn(2, 3, 7)))
    error = rpc_error(stub(grpc_target).ComputeLoss, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "behaviour_distribution['logits']" in error.details() and "[2, 3, 2]" in error.details()


def test_an_infinite_observation_is_refused(grpc_target: str) -> None:
    batch = random_batch((2,), 5, seed=1)
    batch.observation[1, 2, 0] = float("inf")
    request = pb.ComputeAdvantageRequest(trajectory=full_trajectory(batch))
    error = rpc_error(stub(grpc_target).ComputeAdvantage, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        "trajectory.observation['observation']" in error.details() and "[1, 2]" in error.details()
    )


def test_nan_next_observations_are_still_accepted_at_terminated_steps(grpc_target: str) -> None:
    batch = random_batch((2,), 6, seed=2)
    batch.terminated[0, 3] = batch.done[0, 3] = True
    batch.next_observation[0, 3] = float("nan")  # TorchRL's compact storage at an episode end
    stub(grpc_target).ComputeAdvantage(
        pb.ComputeAdvantageRequest(trajectory=full_trajectory(batch)), timeout=30
    )


def test_messages_name_the_field(grpc_target: str) -> None:
    api = stub(grpc_target)
    batch = random_batch((2,), 3)
    batch.sample_log_prob[0, 1] = float("nan")
    error = rpc_error(api.ComputeLoss, pb.ComputeLossRequest(trajectory=full_trajectory(batch)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("trajectory.sample_log_prob: expected finite values")
    request = pb.ComputeLossRequest(trajectory=full_trajectory(random_batch((2,), 3)))
    request.ppo_clip.options.entropy_coeff = float("inf")
    error = rpc_error(api.ComputeLoss, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ppo_clip.options.entropy_coeff: expected a finite value ≥ 0" in error.details()
    # A 16 KB model name is not echoed whole (the status would exceed gRPC's metadata limit).
    name = "m" * 16_000
    request = pb.ComputeAdvantageRequest(model_name=name, trajectory=full_trajectory(batch))
    error = rpc_error(api.ComputeAdvantage, request)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "16000 characters" in error.details() and len(error.details()) < 500


# ---- bounded work ----------------------------------------------------------------------------


def test_a_response_over_the_limit_is_refused_before_the_work() -> None:
    slow = _SlowValue(0.0)
    with running_server(Settings(max_message_mb=0.5), models={"demo": _model_with(slow)}) as server:
        api = stub(server.target)
        # float64 rewards, compact form: 25 bytes a step in, 32 bytes a step out (four float64
        # tensors): 18,000 steps are a 450 KB request and a 576 KB response, over 512 KiB.
        steps = 18_000
        trajectory = pb.Trajectory(
            reward=tensor(torch.randn(1, steps, dtype=torch.float64)),
            done=tensor(torch.zeros(1, steps, dtype=torch.bool)),
            form=pb.TRAJECTORY_FORM_COMPACT,
        )
        trajectory.observation["observation"].CopyFrom(tensor(torch.randn(1, steps + 1, 4)))
        trajectory.next_observation["observation"].CopyFrom(tensor(torch.zeros(0, 4)))
        slow.calls = 0
        error = rpc_error(api.ComputeAdvantage, pb.ComputeAdvantageRequest(trajectory=trajectory))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.details().startswith("response:"), error.details()
        assert slow.calls == 0  # refused before the value network ran
        metrics = server.server.metrics.exposition().decode()
        assert 'code="RESOURCE_EXHAUSTED"' in metrics  # not recorded as OK


def test_requests_over_the_in_flight_budget_are_refused_before_any_work() -> None:
    slow = _SlowValue(2.0)
    model = Model(
        demo_manifest(), torch.device("cpu"), value_network=slow, actor_network=demo_networks()[1]
    )
    settings = Settings(max_inflight_mb=0.05, workers=2)  # ~52 KB of requests at once
    with running_server(settings, models={"demo": model}) as server:
        api = stub(server.target)
        request = pb.ComputeAdvantageRequest(trajectory=full_trajectory(random_batch((1,), 600)))
        assert 30_000 < request.ByteSize() < 52_000
        slow.started.clear()  # the warm-up ran the network once
        first = api.ComputeAdvantage.future(request, timeout=60)
        assert slow.started.wait(30)  # the first request is being worked on
        error = rpc_error(api.ComputeAdvantage, request)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-inflight-mb" in error.details()
        first.result()  # the admitted one completes
        api.ComputeAdvantage(request, timeout=60)  # and the budget is free again


def test_a_second_server_cannot_bind_a_taken_port() -> None:
    async def bind_twice(reuse_port: bool) -> None:
        first, port = create_server("127.0.0.1:0", Settings(reuse_port=reuse_port))
        try:
            second, again = create_server(f"127.0.0.1:{port}", Settings(reuse_port=reuse_port))
            assert again == port
            await second.grpc.stop(0)
        finally:
            await first.grpc.stop(0)

    with pytest.raises((OSError, RuntimeError), match="bind"):
        asyncio.run(bind_twice(reuse_port=False))
    asyncio.run(bind_twice(reuse_port=True))  # sharing is there for whoever asks for it


def _l2(model: Model) -> torch.Tensor:
    return sum(p.pow(2).sum() for p in model.value_network.parameters()) + sum(
        p.pow(2).sum() for p in model.actor_network.parameters()
    )


def test_a_step_refused_after_it_ran_restores_parameters_and_adam_state() -> None:
    model = demo_model(torch.device("cpu"))  # Adam, as the manifest says by default
    commits: list[int] = []
    apply_update(model, _l2(model), CallState(), lambda: commits.append(1))  # Adam has state now
    optimizer, parameters = optimizer_of(model)
    before = [p.detach().clone() for p in parameters]
    state = {p: {k: v.clone() for k, v in s.items()} for p, s in optimizer.state.items()}
    call = CallState()
    # The caller gives up while the step runs: the step happened, then it must be undone.
    hook = optimizer.register_step_post_hook(lambda *_: call.cancel())
    try:
        with pytest.raises(Cancelled):
            apply_update(model, _l2(model), call, lambda: commits.append(2))
    finally:
        hook.remove()
    assert commits == [1]
    assert all(torch.equal(a, b) for a, b in zip(before, parameters, strict=True))
    assert all(torch.equal(state[p][k], optimizer.state[p][k]) for p in state for k in state[p])


def test_rpcs_past_max_concurrent_rpcs_are_refused() -> None:
    slow = _SlowValue(2.0)
    with running_server(
        Settings(max_concurrent_rpcs=1), models={"demo": _model_with(slow)}
    ) as server:
        api = stub(server.target)
        request = pb.ComputeAdvantageRequest(trajectory=full_trajectory(random_batch((1,), 4)))
        slow.started.clear()  # the warm-up ran the network once
        first = api.ComputeAdvantage.future(request, timeout=60)
        assert slow.started.wait(30)  # one RPC is being handled
        error = rpc_error(api.ListModels, pb.ListModelsRequest())
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        first.result()
        assert api.ListModels(pb.ListModelsRequest(), timeout=30).models  # room again
