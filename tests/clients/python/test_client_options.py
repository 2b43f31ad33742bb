"""The option objects: what each writes into its oneof, how they check their knobs, and the names
(the service's, TorchRL's, ValueEstimators members) that stand for them. No server."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch
from advantage_client import (
    A2C,
    GAE,
    KLPENPPO,
    PPO,
    TD0,
    TD1,
    ClipPPO,
    EstimatorOptions,
    Impala,
    LossOptions,
    Reinforce,
    TDLambda,
    VTrace,
    estimator_from,
    loss_from,
)
from advantage_client._codec import decode_numpy
from advantage_client._loss import prepare_loss
from advantage_client._pb.advantage.v1 import advantage_pb2 as pb
from advantage_client._request import prepare
from torchrl.objectives import ValueEstimators

from tests.support.client_data import make_batch, to_tensordict


def _scalar(value: float) -> pb.Coefficient:
    return pb.Coefficient(scalar=value)


# ---- each class fills its oneof ------------------------------------------------------------------

# (option object, the oneof field, the message a hand-built request carries for it)
ESTIMATOR_FILLS = [
    (TD0(), "td0", pb.TD0()),
    (TD0(gamma=0.5, average_rewards=True), "td0", pb.TD0(gamma=_scalar(0.5), average_rewards=True)),
    (TD1(gamma=0.25), "td1", pb.TD1(gamma=_scalar(0.25))),
    (TDLambda(gamma=0.5, lmbda=0.75, average_rewards=True), "td_lambda",
     pb.TDLambda(gamma=_scalar(0.5), lmbda=_scalar(0.75), average_rewards=True)),
    (GAE(), "gae", pb.GAE()),
    (GAE(gamma=0.5, lmbda=0.75, average_gae=True), "gae",
     pb.GAE(gamma=_scalar(0.5), lmbda=_scalar(0.75), average_gae=True)),
    (VTrace(gamma=0.5, rho_thresh=2.0, c_thresh=1.5, lmbda=0.75, rho_pg_thresh=3.0,
            average_adv=True), "vtrace",
     pb.VTrace(gamma=_scalar(0.5), rho_thresh=2.0, c_thresh=1.5, lmbda=0.75, rho_pg_thresh=3.0,
               average_adv=True)),
]  # fmt: skip
LOSS_FILLS = [
    (ClipPPO(), "ppo_clip", pb.ClipPPOLoss()),
    (ClipPPO(clip_epsilon=0.1, entropy_bonus=False, entropy_coeff=0.05, critic_coeff=0.5,
             loss_critic_type="l2", normalize_advantage=True, clip_value=0.3), "ppo_clip",
     pb.ClipPPOLoss(clip_epsilon=0.1, options=pb.PolicyLossOptions(
         entropy_bonus=False, entropy_coeff=0.05, critic_coeff=0.5,
         loss_critic_type=pb.CRITIC_LOSS_L2, normalize_advantage=True, clip_value=0.3))),
    (ClipPPO(clip_epsilon=(0.1, 0.3)), "ppo_clip",
     pb.ClipPPOLoss(clip_epsilon_low=0.1, clip_epsilon_high=0.3)),
    (KLPENPPO(dtarg=0.02, beta=0.5, increment=1.5, decrement=0.7, entropy_coeff=0.0), "ppo_kl",
     pb.KLPENPPOLoss(dtarg=0.02, beta=0.5, increment=1.5, decrement=0.7,
                     options=pb.PolicyLossOptions(entropy_coeff=0.0))),
    (PPO(loss_critic_type="smooth_l1", normalize_advantage=False), "ppo",
     pb.PPOLoss(options=pb.PolicyLossOptions(loss_critic_type=pb.CRITIC_LOSS_SMOOTH_L1,
                                             normalize_advantage=False))),
    (A2C(entropy_bonus=True, critic_coeff=0.7, clip_value=0.2), "a2c",
     pb.A2CLoss(options=pb.PolicyLossOptions(entropy_bonus=True, critic_coeff=0.7,
                                             clip_value=0.2))),
    (Reinforce(loss_critic_type="l1", clip_value=0.5), "reinforce",
     pb.ReinforceLoss(options=pb.PolicyLossOptions(loss_critic_type=pb.CRITIC_LOSS_L1,
                                                   clip_value=0.5))),
    (Impala(gamma=0.9, lmbda=0.95, rho_thresh=1.2, c_thresh=0.9, rho_pg_thresh=1.1,
            entropy_bonus=False, entropy_coeff=0.02, critic_coeff=0.5), "impala",
     pb.ImpalaLoss(gamma=0.9, lmbda=0.95, rho_thresh=1.2, c_thresh=0.9, rho_pg_thresh=1.1,
                   entropy_bonus=False, entropy_coeff=0.02, critic_coeff=0.5)),
]  # fmt: skip


@pytest.mark.parametrize(("options", "field", "expected"), ESTIMATOR_FILLS, ids=repr)
@pytest.mark.parametrize("request_type", [pb.ComputeAdvantageRequest, pb.ComputeLossRequest])
def test_an_estimator_fills_its_oneof(
    options: EstimatorOptions, field: str, expected: Any, request_type: type
) -> None:
    request = request_type()
    options.fill(request)
    assert request.WhichOneof("estimator") == field
    assert getattr(request, field) == expected
    assert options.oneof_field == field
    # The bytes of the whole request, as a hand-built one.
    assert request.SerializeToString(deterministic=True) == request_type(
        **{field: expected}
    ).SerializeToString(deterministic=True)


@pytest.mark.parametrize(("options", "field", "expected"), LOSS_FILLS, ids=repr)
def test_a_loss_fills_its_oneof(options: LossOptions, field: str, expected: Any) -> None:
    request = pb.ComputeLossRequest()
    options.fill(request)
    assert request.WhichOneof("loss") == field
    assert request.SerializeToString(deterministic=True) == pb.ComputeLossRequest(
        **{field: expected}
    ).SerializeToString(deterministic=True)


def test_unset_knobs_are_not_sent() -> None:
    request = pb.ComputeLossRequest()
    PPO(normalize_advantage=None).fill(request)
    assert not request.ppo.HasField("options")  # TorchRL's defaults, nothing on the wire
    assert request.ByteSize() == 2  # field 10, length 0


def test_per_step_coefficients_follow_the_reward() -> None:
    batch = make_batch(dtype=np.float64)
    gamma = np.full((*batch.reward.shape, 1), 0.9, np.float32)  # TorchRL's trailing 1
    request = pb.ComputeAdvantageRequest()
    TDLambda(gamma=gamma, lmbda=torch.full(batch.reward.shape, 0.5)).fill(request, batch.reward)
    per_step = request.td_lambda.gamma.per_step
    assert list(per_step.shape) == [3, 6] and per_step.dtype == pb.DTYPE_FLOAT64
    np.testing.assert_array_equal(decode_numpy(request.td_lambda.lmbda.per_step), 0.5)
    with pytest.raises(ValueError, match="gamma: a per-step coefficient needs the reward"):
        GAE(gamma=gamma).fill(pb.ComputeAdvantageRequest())


def test_options_are_frozen_keyword_only_and_compare_by_value() -> None:
    assert GAE(gamma=0.9, lmbda=0.8) == GAE(lmbda=0.8, gamma=0.9)
    assert GAE(gamma=0.9) != TDLambda(gamma=0.9)
    assert hash(ClipPPO(clip_epsilon=[0.1, 0.2])) == hash(ClipPPO(clip_epsilon=(0.1, 0.2)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        GAE().gamma = 0.5  # type: ignore[misc]
    with pytest.raises(TypeError):
        GAE(0.9)  # type: ignore[misc]
    assert repr(ClipPPO(clip_epsilon=0.1, entropy_coeff=0.0)) == (
        "ClipPPO(entropy_coeff=0.0, clip_epsilon=0.1)"
    )
    assert repr(GAE()) == "GAE()"
    assert GAE(gamma=0.9, average_gae=False).knobs() == {"gamma": 0.9, "average_gae": False}


def test_the_ppo_family_is_a_family() -> None:
    assert isinstance(ClipPPO(), PPO) and isinstance(KLPENPPO(), PPO)  # as in TorchRL
    assert not isinstance(A2C(), PPO) and not isinstance(Impala(), PPO)


# ---- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "knobs", "error", "match"),
    [
        (GAE, {"gamma": 1.5}, ValueError, r"gamma must be in \[0, 1\], got 1.5"),
        (GAE, {"lmbda": -0.1}, ValueError, r"lmbda must be in \[0, 1\]"),
        (GAE, {"average_gae": 1}, TypeError, "average_gae must be a bool"),
        (TD0, {"gamma": True}, TypeError, "td0's gamma must be a float or a per-step array"),
        (TD1, {"average_rewards": "yes"}, TypeError, "average_rewards must be a bool"),
        (TDLambda, {"lmbda": 2}, ValueError, r"lmbda must be in \[0, 1\], got 2"),
        (VTrace, {"rho_thresh": 0.0}, ValueError, "rho_thresh must be > 0"),
        (VTrace, {"c_thresh": -1.0}, ValueError, "c_thresh must be > 0"),
        (VTrace, {"rho_pg_thresh": 0}, ValueError, "rho_pg_thresh must be > 0"),
        (VTrace, {"lmbda": 1.5}, ValueError, r"lmbda must be in \[0, 1\]"),
        (VTrace, {"lmbda": np.ones((3, 6))}, TypeError, "vtrace's lmbda must be a float"),
        (ClipPPO, {"clip_epsilon": 0.0}, ValueError, "clip_epsilon must be > 0"),
        (ClipPPO, {"clip_epsilon": (1.0, 0.2)}, ValueError, "clip_epsilon=.* 0 ≤ low < 1"),
        (ClipPPO, {"clip_epsilon": (0.1, 0.2, 0.3)}, TypeError, "clip_epsilon must be .* pair"),
        (PPO, {"entropy_coeff": -0.1}, ValueError, "entropy_coeff must be ≥ 0"),
        (PPO, {"critic_coeff": float("nan")}, ValueError, "critic_coeff must be ≥ 0"),
        (PPO, {"normalize_advantage": 1}, TypeError, "normalize_advantage must be a bool"),
        (PPO, {"loss_critic_type": "huber"}, ValueError, "loss_critic_type must be one of"),
        (KLPENPPO, {"dtarg": 0.0}, ValueError, "dtarg must be > 0"),
        (KLPENPPO, {"beta": -1.0}, ValueError, "beta must be ≥ 0"),
        (KLPENPPO, {"increment": -2.0}, ValueError, "increment must be > 0"),
        (KLPENPPO, {"decrement": 0}, ValueError, "decrement must be > 0"),
        (A2C, {"clip_value": 0.0}, ValueError, "clip_value must be > 0"),
        (A2C, {"normalize_advantage": True}, TypeError, "'normalize_advantage'"),
        (Reinforce, {"entropy_coeff": 0.1}, TypeError, "'entropy_coeff'"),
        (Reinforce, {"clip_value": "big"}, TypeError, "reinforce's clip_value must be a float"),
        (Impala, {"gamma": 1.5}, ValueError, r"gamma must be in \[0, 1\]"),
        (Impala, {"c_thresh": 0.0}, ValueError, "c_thresh must be > 0"),
        (Impala, {"loss_critic_type": "l2"}, TypeError, "'loss_critic_type'"),
    ],
)
def test_a_bad_knob_is_refused_by_name(
    cls: type, knobs: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        cls(**knobs)


@pytest.mark.parametrize("base", [EstimatorOptions, LossOptions])
def test_the_base_classes_are_not_options(base: type) -> None:
    with pytest.raises(TypeError, match="base class"):
        base()


# ---- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("gae", GAE), ("GAE", GAE), ("Gae", GAE),
        ("td0", TD0), ("TD0", TD0), ("TD0Estimator", TD0),
        ("td1", TD1), ("TD1", TD1),
        ("td_lambda", TDLambda), ("TDLambda", TDLambda), ("tdlambda", TDLambda),
        ("TD_LAMBDA", TDLambda), ("TDLambdaEstimator", TDLambda),
        ("vtrace", VTrace), ("VTrace", VTrace), ("VTRACE", VTrace),
    ],
)  # fmt: skip
def test_estimator_names_are_case_insensitive(name: str, cls: type) -> None:
    options = estimator_from(name)
    assert type(options) is cls and options.knobs() == {}


@pytest.mark.parametrize(
    "member", [m for m in ValueEstimators if m.name != "MAGAE"], ids=lambda m: m.name
)
def test_torchrl_value_estimators_members(member: ValueEstimators) -> None:
    options = estimator_from(member)
    assert type(options).__name__ == member.name  # TD0, TD1, TDLambda, GAE, VTrace
    request = prepare(estimator=member, **make_batch().arrays(with_vtrace=True)).request
    assert request.WhichOneof("estimator") == options.oneof_field


def test_torchrl_multi_agent_gae_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown estimator 'MAGAE'"):
        estimator_from(ValueEstimators.MAGAE)


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("ppo_clip", ClipPPO), ("ClipPPOLoss", ClipPPO), ("clipppo", ClipPPO),
        ("ppo_kl", KLPENPPO), ("KLPENPPOLoss", KLPENPPO), ("KLPENPPO", KLPENPPO),
        ("ppo", PPO), ("PPOLoss", PPO),
        ("a2c", A2C), ("A2CLoss", A2C),
        ("reinforce", Reinforce), ("ReinforceLoss", Reinforce),
        ("impala", Impala), ("IMPALA", Impala),
    ],
)  # fmt: skip
def test_loss_names_are_case_insensitive(name: str, cls: type) -> None:
    options = loss_from(name)
    assert type(options) is cls and options.knobs() == {}


def test_an_option_object_or_class_stands_for_itself() -> None:
    gae = GAE(gamma=0.5)
    assert estimator_from(gae) is gae
    assert estimator_from(VTrace) == VTrace()
    assert loss_from(A2C) == A2C()


@pytest.mark.parametrize(
    ("resolve", "value", "error", "match"),
    [
        (estimator_from, "ppo", ValueError, "unknown estimator 'ppo'; expected one of td0, "),
        (estimator_from, ClipPPO(), TypeError, "estimator must be .*GAE.*, got ClipPPO"),
        (estimator_from, 0.9, TypeError, "estimator must be .* got float"),
        (estimator_from, LossOptions, TypeError, "got type"),
        (loss_from, "sac", ValueError, "unknown loss 'sac'"),
        (loss_from, GAE(), TypeError, "loss must be .*ClipPPO.*, got GAE"),
        (loss_from, ValueEstimators.GAE, ValueError, "unknown loss 'GAE'"),
    ],
)
def test_unknown_names_and_kinds(resolve: Any, value: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        resolve(value)


def test_names_and_objects_build_the_same_requests() -> None:
    arrays = make_batch().arrays(with_vtrace=True)
    td = to_tensordict(make_batch())
    for name, options in [("TDLambda", TDLambda()), (ValueEstimators.VTrace, VTrace())]:
        assert (
            prepare(estimator=name, **arrays).request
            == prepare(estimator=options, **arrays).request
        )
        assert (
            prepare(td, estimator=name, in_keys=["observation"]).request
            == prepare(td, estimator=options, in_keys=["observation"]).request
        )
    by_name = prepare_loss(loss="A2CLoss", estimator=ValueEstimators.TD1, **arrays).request
    assert by_name == prepare_loss(loss=A2C(), estimator=TD1(), **arrays).request
    assert (by_name.WhichOneof("loss"), by_name.WhichOneof("estimator")) == ("a2c", "td1")
