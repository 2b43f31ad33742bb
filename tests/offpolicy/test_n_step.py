"""n-step targets: an off-policy loss with a TD(λ) or TD(1) estimator over [*B, T] segments
equals TorchRL 0.14.1's loss after make_value_estimator(TDLambda / TD1) on the same data."""

from __future__ import annotations

import copy

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import Categorical
from torchrl.modules import QValueActor
from torchrl.objectives import DQNLoss, ValueEstimators

from service.models.demo_offpolicy import demo_dqn_model, demo_sac_model
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.wire.codec import encode_tensor
from tests.support.offpolicy import F64, SAC_TERMS, as_float64, sac_oracle, stub, td_error
from tests.support.servers import running_server

RTOL = 1e-5
CPU = torch.device("cpu")
B, T = 3, 5


def _segments(observation_size: int, action, seed: int = 0) -> dict[str, torch.Tensor]:
    """[B, T] segments: chained observations, a termination, a truncation."""
    g = torch.Generator().manual_seed(seed)
    chain = torch.randn(B, T + 1, observation_size, generator=g, dtype=F64)
    done = torch.zeros(B, T, dtype=torch.bool)
    terminated = torch.zeros(B, T, dtype=torch.bool)
    done[0, 2] = terminated[0, 2] = True  # an episode ends inside row 0
    done[1, 1] = True  # row 1 is truncated at t = 1 (bootstraps, stops the trace)
    next_observation = chain[:, 1:].clone()
    next_observation[1, 1] = torch.randn(observation_size, generator=g, dtype=F64)
    return {
        "observation": chain[:, :-1].contiguous(),
        "next_observation": next_observation,
        "action": action(g),
        "reward": torch.randn(B, T, generator=g, dtype=F64),
        "done": done,
        "terminated": terminated,
    }


def _tensordict(data: dict[str, torch.Tensor]) -> TensorDict:
    return TensorDict(
        {
            "observation": data["observation"],
            "action": data["action"],
            "next": {
                "observation": data["next_observation"],
                "reward": data["reward"].unsqueeze(-1),
                "done": data["done"].unsqueeze(-1),
                "terminated": data["terminated"].unsqueeze(-1),
            },
        },
        [B, T],
    )


def _trajectory(data: dict[str, torch.Tensor]) -> pb.Trajectory:
    return pb.Trajectory(
        observation={"observation": encode_tensor(data["observation"])},
        next_observation={"observation": encode_tensor(data["next_observation"])},
        action=encode_tensor(data["action"]),
        reward=encode_tensor(data["reward"]),
        done=encode_tensor(data["done"]),
        terminated=encode_tensor(data["terminated"]),
    )


def _tensor(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=F64)


@pytest.mark.parametrize("double_dqn", [False, True])
def test_dqn_with_td_lambda_equals_torchrl(double_dqn: bool) -> None:
    model = as_float64(demo_dqn_model(CPU))
    network = copy.deepcopy(model.qvalue_network)
    actor = QValueActor(
        network, in_keys=["observation"], spec=Categorical(2), action_space="categorical"
    )
    oracle = DQNLoss(actor, action_space="categorical", double_dqn=double_dqn)
    oracle.make_value_estimator(
        ValueEstimators.TDLambda, gamma=_tensor(0.9), lmbda=_tensor(0.8), vectorized=False
    )
    data = _segments(4, lambda g: torch.randint(0, 2, (B, T), generator=g))
    td = _tensordict(data)
    expected = oracle(td)
    with running_server(models={"demo_dqn": model}) as server:
        response = stub(server.port).ComputeLoss(
            pb.ComputeLossRequest(
                model_name="demo_dqn",
                trajectory=_trajectory(data),
                dqn=pb.DQNLoss(double_dqn=double_dqn),
                td_lambda=pb.TDLambda(
                    gamma=pb.Coefficient(scalar=0.9), lmbda=pb.Coefficient(scalar=0.8)
                ),
                return_td_error=True,
            )
        )
    assert response.loss == pytest.approx(float(expected["loss"].detach()), rel=RTOL)
    torch.testing.assert_close(
        td_error(response), td["td_error"].squeeze(-1), rtol=RTOL, atol=1e-12
    )
    assert td_error(response).shape == (B, T)


def test_sac_with_td1_equals_torchrl() -> None:
    model = as_float64(demo_sac_model(CPU))
    oracle = sac_oracle(model)
    oracle.make_value_estimator(ValueEstimators.TD1, gamma=_tensor(0.95))
    data = _segments(3, lambda g: torch.rand(B, T, 1, generator=g, dtype=F64) * 1.8 - 0.9)
    td = _tensordict(data)
    torch.manual_seed(5)
    expected = oracle(td)
    with running_server(models={"demo_sac": model}) as server:
        response = stub(server.port).ComputeLoss(
            pb.ComputeLossRequest(
                model_name="demo_sac",
                trajectory=_trajectory(data),
                sac=pb.SACLoss(seed=5),
                td1=pb.TD1(gamma=pb.Coefficient(scalar=0.95)),
                return_td_error=True,
            )
        )
    metrics = dict(response.metrics)
    for key in SAC_TERMS:
        assert metrics[key] == pytest.approx(float(expected[key].detach()), rel=RTOL, abs=1e-12), (
            key
        )
    torch.testing.assert_close(td_error(response), td["td_error"], rtol=RTOL, atol=1e-12)


def test_gae_is_not_an_off_policy_target() -> None:
    model = as_float64(demo_dqn_model(CPU))
    data = _segments(4, lambda g: torch.randint(0, 2, (B, T), generator=g))
    with running_server(models={"demo_dqn": model}) as server, pytest.raises(Exception) as raised:
        stub(server.port).ComputeLoss(
            pb.ComputeLossRequest(
                model_name="demo_dqn", trajectory=_trajectory(data), dqn=pb.DQNLoss(), gae=pb.GAE()
            )
        )
    assert "not gae" in raised.value.details()
