"""The Python client's off-policy option classes and request builder (no server needed): knobs
checked when built, written to the contract's fields, "auto" and None left unset."""

from __future__ import annotations

import re

import numpy as np
import pytest
from advantage_client import DDPG, DQN, IQL, SAC, TD3, DiscreteCQL, DiscreteSAC
from advantage_client._pb.advantage.v1 import advantage_pb2 as pb
from advantage_client.offpolicy import prepare_offpolicy_loss


def _batch(discrete: bool = False) -> dict:
    return {
        "observation": np.zeros((2, 3), np.float32),
        "next_observation": np.ones((2, 3), np.float32),
        "action": np.array([0, 1]) if discrete else np.zeros((2, 1), np.float32),
        "reward": np.array([1.0, 0.0], np.float32),
        "done": np.array([False, True]),
    }


def test_knobs_are_written_to_the_loss_message() -> None:
    request = prepare_offpolicy_loss(
        loss=SAC(
            alpha_init=0.5,
            target_entropy="auto",
            num_qvalue_nets=2,
            seed=3,
            fixed_alpha=True,
            loss_function="l2",
        ),
        model="m",
        apply_update=True,
        return_td_error=True,
        tau=0.01,
        expected_parameter_version=4,
        **_batch(),
    )
    assert request.WhichOneof("loss") == "sac"
    assert (request.sac.alpha_init, request.sac.num_qvalue_nets, request.sac.seed) == (0.5, 2, 3)
    assert request.sac.fixed_alpha and request.sac.loss_function == pb.CRITIC_LOSS_L2
    assert not request.sac.HasField("target_entropy")  # "auto" = the server's default
    assert not request.sac.HasField("gamma")
    assert request.target_update.tau == 0.01 and request.return_td_error
    assert request.expected_parameter_version == 4
    assert list(request.trajectory.observation) == ["observation"]
    assert not request.trajectory.HasField("terminated")


def test_every_off_policy_class_selects_its_oneof() -> None:
    for options, field, discrete in (
        (DQN(double_dqn=True), "dqn", True),
        (DiscreteSAC(target_entropy_weight=0.5), "discrete_sac", True),
        (DDPG(delay_actor=True), "ddpg", False),
        (TD3(policy_update_delay=3, policy_noise=0.1), "td3", False),
        (IQL(expectile=0.7), "iql", False),
        (DiscreteCQL(delay_value=False), "discrete_cql", True),
    ):
        request = prepare_offpolicy_loss(loss=options, hard_interval=5, **_batch(discrete))
        assert request.WhichOneof("loss") == field
        assert request.target_update.hard_interval == 5


@pytest.mark.parametrize(
    ("build", "error", "text"),
    [
        (lambda: DQN(gamma=1.5), ValueError, "gamma must be in [0, 1]"),
        (lambda: SAC(alpha_init=0.0), ValueError, "alpha_init must be > 0"),
        (lambda: SAC(num_qvalue_nets=0), ValueError, "num_qvalue_nets must be ≥ 1"),
        (lambda: SAC(num_qvalue_nets=2.0), TypeError, "num_qvalue_nets must be an int"),
        (lambda: DQN(double_dqn=1), TypeError, "double_dqn must be a bool"),
        (lambda: DQN(loss_function="huber"), ValueError, "loss_function must be one of"),
        (lambda: TD3(noise_clip=-0.1), ValueError, "noise_clip must be ≥ 0"),
        (lambda: IQL(expectile=2.0), ValueError, "expectile must be in [0, 1]"),
        (lambda: SAC(target_entropy=float("nan")), ValueError, "target_entropy must be finite"),
    ],
)
def test_bad_knobs_are_refused_when_built(build, error, text: str) -> None:
    with pytest.raises(error, match=re.escape(text)):
        build()


def test_the_request_builder_refuses_what_the_server_would() -> None:
    with pytest.raises(ValueError, match=r"tau .* or hard_interval, not both"):
        prepare_offpolicy_loss(loss=DQN(), tau=0.1, hard_interval=2, **_batch(True))
    with pytest.raises(TypeError, match="loss must be DQN"):
        prepare_offpolicy_loss(loss="dqn", **_batch(True))
