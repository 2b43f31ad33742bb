"""ComputeAdvantage over a real server: results equal TorchRL computed in-process.

The server holds the built-in demo networks; the tests wrap the same seeded networks in TorchRL's
estimator classes (`GAE(value_network=…)`, `VTrace(actor_network=…)`, …) and compare.
"""

from __future__ import annotations

import pytest
import torch
from torchrl.objectives.value import GAE, TD0Estimator, TD1Estimator, TDLambdaEstimator, VTrace
from torchrl.objectives.value import functional as F

from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support.torchrl_reference import as_tensordict, torchrl_modules
from tests.support.wire import array, compact_trajectory, full_trajectory, random_batch, stub

GAMMA, LMBDA = 0.97, 0.9


def torchrl_estimator(name: str):
    value, actor = torchrl_modules()
    if name == "td0":
        return TD0Estimator(gamma=GAMMA, value_network=value)
    if name == "td1":
        return TD1Estimator(gamma=GAMMA, value_network=value)
    if name == "td_lambda":
        return TDLambdaEstimator(gamma=GAMMA, lmbda=LMBDA, value_network=value)
    if name == "gae":
        return GAE(gamma=GAMMA, lmbda=LMBDA, value_network=value)
    vtrace = VTrace(gamma=GAMMA, value_network=value, actor_network=actor)
    vtrace.set_keys(sample_log_prob="sample_log_prob")  # 0.14.1's default is action_log_prob
    return vtrace


def request_for(name: str, trajectory: pb.Trajectory) -> pb.ComputeAdvantageRequest:
    gamma = pb.Coefficient(scalar=GAMMA)
    lmbda = pb.Coefficient(scalar=LMBDA)
    knobs = {
        "td0": pb.TD0(gamma=gamma),
        "td1": pb.TD1(gamma=gamma),
        "td_lambda": pb.TDLambda(gamma=gamma, lmbda=lmbda),
        "gae": pb.GAE(gamma=gamma, lmbda=lmbda),
        "vtrace": pb.VTrace(gamma=gamma),
    }
    return pb.ComputeAdvantageRequest(
        model_name="demo", trajectory=trajectory, **{name: knobs[name]}
    )


ESTIMATORS = ["td0", "td1", "td_lambda", "gae", "vtrace"]


@pytest.mark.parametrize("name", ESTIMATORS)
@pytest.mark.parametrize("batch_shape", [(3,), (2, 2)])
def test_server_networks_match_torchrl(grpc_target: str, name: str, batch_shape) -> None:
    batch = random_batch(batch_shape, steps=24, seed=len(name))
    if name == "vtrace":
        # TorchRL 0.14.1's VTrace(actor_network=…) scores the actor's mode (argmax), not the
        # recorded action; with mode actions the two agree (recorded actions: next test).
        with torch.no_grad():
            batch.action = torchrl_modules()[1].get_dist(as_tensordict(batch)).probs.argmax(-1)
    response = stub(grpc_target).ComputeAdvantage(request_for(name, full_trajectory(batch)))

    expected = as_tensordict(batch)
    with torch.no_grad():
        torchrl_estimator(name)(expected)
    assert response.model_name == "demo"
    assert list(response.advantage.shape) == list(batch.reward.shape)
    torch.testing.assert_close(array(response.advantage), expected["advantage"].squeeze(-1))
    torch.testing.assert_close(array(response.value_target), expected["value_target"].squeeze(-1))
    torch.testing.assert_close(array(response.state_value), expected["state_value"].squeeze(-1))
    used = ~batch.terminated  # the bootstrap at terminated steps is never used; the server sends 0
    torch.testing.assert_close(
        array(response.next_state_value)[used], expected["next", "state_value"].squeeze(-1)[used]
    )
    assert bool((array(response.next_state_value)[batch.terminated] == 0).all())


@pytest.mark.parametrize("name", ESTIMATORS)
def test_compact_form_equals_full_form(grpc_target: str, name: str) -> None:
    batch = random_batch((4,), steps=32, seed=7)
    assert batch.truncated.any() and batch.terminated.any()
    api = stub(grpc_target)
    full = api.ComputeAdvantage(request_for(name, full_trajectory(batch)))
    compact = api.ComputeAdvantage(request_for(name, compact_trajectory(batch)))
    for field in ("advantage", "value_target", "state_value", "next_state_value"):
        torch.testing.assert_close(
            array(getattr(compact, field)), array(getattr(full, field)), rtol=1e-6, atol=1e-6
        )
    observation_bytes = lambda t: sum(  # noqa: E731
        m.ByteSize() for field in (t.observation, t.next_observation) for m in field.values()
    )
    # B·(T+1) + K rows instead of 2·B·T (≈ 7 % of steps are truncated here).
    ratio = observation_bytes(compact_trajectory(batch)) / observation_bytes(full_trajectory(batch))
    assert ratio < 0.6


def test_compact_form_ignores_the_bootstrap_observation_after_a_final_done(grpc_target) -> None:
    batch = random_batch((2,), steps=8, seed=3)
    batch.done[:, -1] = True
    batch.terminated[:, -1] = True
    trajectory = compact_trajectory(batch)
    poisoned = torch.cat(
        [batch.observation, torch.full((2, 1, 4), float("nan"))], dim=-2
    )  # index T is never read when the last step is done
    from tests.support.wire import tensor

    trajectory.observation["observation"].CopyFrom(tensor(poisoned))
    api = stub(grpc_target)
    compact = api.ComputeAdvantage(request_for("gae", trajectory))
    full = api.ComputeAdvantage(request_for("gae", full_trajectory(batch)))
    torch.testing.assert_close(array(compact.advantage), array(full.advantage))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_client_sent_values_match_torchrl_functional(grpc_target: str, dtype) -> None:
    batch = random_batch((3,), steps=20, seed=11, dtype=dtype)
    g = torch.Generator().manual_seed(5)
    value = torch.randn(batch.reward.shape, generator=g, dtype=dtype)
    next_value = torch.randn(batch.reward.shape, generator=g, dtype=dtype)
    trajectory = full_trajectory(batch, state_value=value, next_state_value=next_value)
    response = stub(grpc_target).ComputeAdvantage(request_for("gae", trajectory))

    col = lambda x: x.unsqueeze(-1)  # noqa: E731 - TorchRL's [*B, T, 1]
    adv, target = F.generalized_advantage_estimate(
        torch.tensor(GAMMA, dtype=dtype),
        torch.tensor(LMBDA, dtype=dtype),
        col(value),
        col(next_value),
        col(batch.reward),
        col(batch.done),
        col(batch.terminated),
    )
    assert response.advantage.dtype == (
        pb.DTYPE_FLOAT32 if dtype == torch.float32 else pb.DTYPE_FLOAT64
    )
    tolerance = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {}
    torch.testing.assert_close(array(response.advantage), adv.squeeze(-1), **tolerance)
    torch.testing.assert_close(array(response.value_target), target.squeeze(-1), **tolerance)
    assert not response.HasField("state_value")  # the client's values were used, not computed


def test_vtrace_scores_the_recorded_action(grpc_target: str) -> None:
    batch = random_batch((3,), steps=24, seed=9)
    value, actor = torchrl_modules()
    data = as_tensordict(batch)
    with torch.no_grad():
        log_pi = actor.get_dist(data).log_prob(batch.action).unsqueeze(-1)
        state_value = value(data.clone())["state_value"]
        next_state_value = value(data["next"].clone())["state_value"]
    adv, vs = F.vtrace_advantage_estimate(
        GAMMA,
        log_pi,
        data["sample_log_prob"].unsqueeze(-1),
        state_value,
        next_state_value,
        data["next", "reward"],
        data["next", "done"],
        data["next", "terminated"],
    )
    response = stub(grpc_target).ComputeAdvantage(request_for("vtrace", full_trajectory(batch)))
    torch.testing.assert_close(array(response.advantage), adv.squeeze(-1))
    torch.testing.assert_close(array(response.value_target), vs.squeeze(-1))


def test_vtrace_with_client_log_prob_needs_no_actor_call(grpc_target: str) -> None:
    batch = random_batch((2,), steps=12, seed=2)
    with torch.no_grad():
        log_pi = torchrl_modules()[1].get_dist(as_tensordict(batch)).log_prob(batch.action)
    api = stub(grpc_target)
    with_actor = api.ComputeAdvantage(request_for("vtrace", full_trajectory(batch)))
    trajectory = full_trajectory(batch, log_prob=log_pi)
    trajectory.ClearField("action")  # without it the server could not call the actor
    without_actor = api.ComputeAdvantage(request_for("vtrace", trajectory))
    torch.testing.assert_close(array(without_actor.advantage), array(with_actor.advantage))
    torch.testing.assert_close(array(without_actor.value_target), array(with_actor.value_target))


def test_per_step_gamma_and_standardisation(grpc_target: str) -> None:
    batch = random_batch((3,), steps=10, seed=4)
    g = torch.Generator().manual_seed(1)
    gamma = torch.rand(batch.reward.shape, generator=g) * 0.5 + 0.5
    from tests.support.wire import tensor

    request = pb.ComputeAdvantageRequest(
        trajectory=full_trajectory(batch),
        gae=pb.GAE(gamma=pb.Coefficient(per_step=tensor(gamma)), average_gae=True),
    )
    response = stub(grpc_target).ComputeAdvantage(request)
    value = array(response.state_value).unsqueeze(-1)
    next_value = array(response.next_state_value).unsqueeze(-1)
    adv, target = F.generalized_advantage_estimate(
        gamma.unsqueeze(-1),
        0.95,  # the demo model's default λ
        value,
        next_value,
        batch.reward.unsqueeze(-1),
        batch.done.unsqueeze(-1),
        batch.terminated.unsqueeze(-1),
    )
    standardised = (adv - adv.mean()) / adv.std().clamp_min(1e-4)
    torch.testing.assert_close(array(response.advantage), standardised.squeeze(-1))
    torch.testing.assert_close(array(response.value_target), target.squeeze(-1))


def test_response_reports_model_version_and_timing(grpc_target: str) -> None:
    batch = random_batch((2,), steps=8)
    response = stub(grpc_target).ComputeAdvantage(
        pb.ComputeAdvantageRequest(trajectory=full_trajectory(batch))  # unset: GAE, default model
    )
    assert response.model_name == "demo"
    assert response.parameter_version == 0
    timing = response.timing
    assert min(timing.decode_ms, timing.network_ms, timing.estimator_ms, timing.encode_ms) >= 0
    assert timing.network_ms > 0 and timing.estimator_ms > 0
