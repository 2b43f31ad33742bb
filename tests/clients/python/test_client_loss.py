"""compute_loss against real servers: the raw stub's numbers, TorchRL's numbers and gradients,
updates and versions. Updates run on a server of their own, never on the shared `grpc_target`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from advantage_client import (
    A2C,
    GAE,
    KLPENPPO,
    PPO,
    AdvantageClient,
    ClipPPO,
    FailedPreconditionError,
    Impala,
    InvalidArgumentError,
    LossResult,
    NotFoundError,
    Reinforce,
    TDLambda,
)

from service.pb.advantage.v1 import advantage_pb2 as spb
from tests.support.servers import running_server
from tests.support.torchrl_reference import LR, as_tensordict, sgd_model, torchrl_loss
from tests.support.wire import Batch, full_trajectory, random_batch, stub, tensor

# Non-default knobs per loss: the client's arguments and the raw message a hand-built request
# carries (independently of the client's code).
ESTIMATOR = {"estimator": TDLambda(gamma=0.9, lmbda=0.8)}
RAW_ESTIMATOR = {
    "td_lambda": spb.TDLambda(gamma=spb.Coefficient(scalar=0.9), lmbda=spb.Coefficient(scalar=0.8))
}
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "ppo_clip": (
        {"loss": ClipPPO(clip_epsilon=(0.1, 0.3), entropy_coeff=0.05, critic_coeff=0.5,
                         loss_critic_type="l2", normalize_advantage=True)},
        {"ppo_clip": spb.ClipPPOLoss(
            options=spb.PolicyLossOptions(entropy_coeff=0.05, critic_coeff=0.5,
                                          loss_critic_type=spb.CRITIC_LOSS_L2,
                                          normalize_advantage=True),
            clip_epsilon_low=0.1, clip_epsilon_high=0.3)},
    ),
    "ppo": (
        {"loss": PPO(entropy_bonus=False, loss_critic_type="l1", clip_value=0.2), **ESTIMATOR},
        {"ppo": spb.PPOLoss(options=spb.PolicyLossOptions(
            entropy_bonus=False, loss_critic_type=spb.CRITIC_LOSS_L1, clip_value=0.2)),
         **RAW_ESTIMATOR},
    ),
    "a2c": (
        {"loss": A2C(entropy_coeff=0.02, critic_coeff=0.7), "estimator": "td0"},
        {"a2c": spb.A2CLoss(options=spb.PolicyLossOptions(entropy_coeff=0.02, critic_coeff=0.7)),
         "td0": spb.TD0()},
    ),
    "reinforce": (
        {"loss": Reinforce(loss_critic_type="l2", clip_value=0.5)},
        {"reinforce": spb.ReinforceLoss(options=spb.PolicyLossOptions(
            loss_critic_type=spb.CRITIC_LOSS_L2, clip_value=0.5))},
    ),
    "impala": (
        {"loss": Impala(gamma=0.9, lmbda=0.95, rho_thresh=1.2, c_thresh=0.9, rho_pg_thresh=1.1,
                        entropy_coeff=0.02, critic_coeff=0.5)},
        {"impala": spb.ImpalaLoss(gamma=0.9, lmbda=0.95, rho_thresh=1.2, c_thresh=0.9,
                                  rho_pg_thresh=1.1, entropy_coeff=0.02, critic_coeff=0.5)},
    ),
    "ppo_kl": (
        {"loss": KLPENPPO(dtarg=0.02, beta=0.5, increment=1.5, decrement=0.7, entropy_coeff=0.0)},
        {"ppo_kl": spb.KLPENPPOLoss(options=spb.PolicyLossOptions(entropy_coeff=0.0),
                                    dtarg=0.02, beta=0.5, increment=1.5, decrement=0.7)},
    ),
}  # fmt: skip
LOSSES = list(CASES)


def behaviour_logits(batch: Batch) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.randn(*batch.reward.shape, 2, generator=g)


def trajectory_kwargs(batch: Batch, kind: str) -> dict[str, Any]:
    """compute_loss's trajectory keywords from a test batch, as numpy arrays or torch tensors."""
    tensors = {
        "reward": batch.reward,
        "done": batch.done,
        "terminated": batch.terminated,
        "observation": batch.observation,
        "next_observation": batch.next_observation,
        "action": batch.action,
        "sample_log_prob": batch.sample_log_prob,
    }
    return {k: v.numpy() for k, v in tensors.items()} if kind == "numpy" else tensors


@pytest.fixture
def client(grpc_target: str) -> Iterator[AdvantageClient]:
    with AdvantageClient(grpc_target, timeout=60) as c:
        yield c


@pytest.fixture
def sgd_server() -> Iterator[Any]:
    """A server of its own (plain SGD, lr = LR): updates never touch the shared one."""
    with running_server(models={"demo": sgd_model()}) as server:
        yield server


def assert_same(result: LossResult, raw: spb.ComputeLossResponse) -> None:
    assert result.loss == raw.loss
    assert result.metrics == dict(raw.metrics)
    assert result.parameter_version == raw.parameter_version
    assert (result.updated, result.new_parameter_version) == (False, raw.parameter_version)
    assert result.model_name == raw.model_name == "demo"


# ---- the raw stub's numbers ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["numpy", "torch", "tensordict"])
@pytest.mark.parametrize("loss", LOSSES)
def test_equals_the_raw_stub(
    client: AdvantageClient, grpc_target: str, loss: str, kind: str
) -> None:
    batch = random_batch((3,), steps=10, seed=31)
    knobs, raw_fields = CASES[loss]
    request = spb.ComputeLossRequest(trajectory=full_trajectory(batch), **raw_fields)
    if loss == "ppo_kl":
        request.behaviour_distribution["logits"].CopyFrom(tensor(behaviour_logits(batch)))
    raw = stub(grpc_target).ComputeLoss(request, timeout=60)

    if kind == "tensordict":
        td = as_tensordict(batch)
        if loss == "ppo_kl":
            td["logits"] = behaviour_logits(batch)  # where TorchRL's KLPENPPOLoss reads it
        result = client.compute_loss(td, **knobs)
    else:
        arrays = trajectory_kwargs(batch, kind)
        if loss == "ppo_kl":
            logits = behaviour_logits(batch)
            arrays["behaviour_distribution"] = {
                "logits": logits.numpy() if kind == "numpy" else logits
            }
        result = client.compute_loss(**knobs, **arrays)
    assert isinstance(result, LossResult)
    assert_same(result, raw)
    assert result.loss == pytest.approx(
        sum(v for k, v in result.metrics.items() if k.startswith("loss_")), rel=1e-6
    )


def test_compact_form_equals_full(client: AdvantageClient) -> None:
    batch = random_batch((2, 3), steps=8, seed=2)
    arrays = trajectory_kwargs(batch, "numpy")
    full = client.compute_loss(**arrays)
    compact = client.compute_loss(form="compact", **arrays)
    assert compact.loss == pytest.approx(full.loss, rel=1e-6)
    for key, value in full.metrics.items():
        assert compact.metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


# ---- TorchRL's numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["ppo_clip", "ppo", "a2c", "reinforce", "ppo_kl"])
def test_tensordict_matches_torchrl(client: AdvantageClient, loss: str) -> None:
    batch = random_batch((4,), steps=12, seed=17)
    td = as_tensordict(batch)
    if loss == "ppo_kl":
        td["logits"] = behaviour_logits(batch)
    module, _, _ = torchrl_loss(loss)
    out = module(td.clone())  # TorchRL computes its default GAE(0.99, 0.95) itself
    result = client.compute_loss(td, loss=loss)
    for key in out.keys():  # noqa: SIM118 - a TensorDict's keys
        if key.startswith("loss_") or key in ("entropy", "kl", "kl_approx", "clip_fraction"):
            expected = float(out[key].detach().mean())  # TorchRL 0.14.1 leaves "kl" unreduced
            assert result.metrics[key] == pytest.approx(expected, rel=1e-5, abs=1e-6), key
    total = sum(float(v.detach()) for k, v in out.items() if k.startswith("loss_"))
    assert result.loss == pytest.approx(total, rel=1e-5, abs=1e-6)


def test_advantage_from_compute_advantage_is_used(client: AdvantageClient) -> None:
    batch = random_batch((3,), steps=10, seed=8)
    td = client.compute_advantage(as_tensordict(batch), estimator=GAE(gamma=0.9, lmbda=0.8))
    module, _, _ = torchrl_loss("ppo_clip")
    module.make_value_estimator(gamma=0.5)  # would differ if TorchRL recomputed the advantage
    out = module(td.clone())
    result = client.compute_loss(td)  # sends td's advantage and value_target
    assert result.metrics["loss_objective"] == pytest.approx(
        float(out["loss_objective"].detach()), rel=1e-5
    )
    assert result.metrics["loss_critic"] == pytest.approx(
        float(out["loss_critic"].detach()), rel=1e-5
    )
    # The same numbers when the server runs that estimator itself...
    estimated = client.compute_loss(
        td,
        recompute_advantage=True,
        estimator=GAE(gamma=0.9, lmbda=0.8),
    )
    assert estimated.loss == pytest.approx(result.loss, rel=1e-6)
    # ...and different ones with another estimator.
    other = client.compute_loss(td, recompute_advantage=True, estimator="td0")
    assert other.loss != pytest.approx(result.loss, rel=1e-3)
    # Arrays: advantage and value_target by keyword.
    arrays = trajectory_kwargs(batch, "numpy")
    by_keyword = client.compute_loss(
        advantage=td["advantage"].squeeze(-1).numpy(),
        value_target=td["value_target"].squeeze(-1).numpy(),
        **arrays,
    )
    assert by_keyword.loss == result.loss


def test_asymmetric_clip_matches_torchrl(client: AdvantageClient) -> None:
    from torchrl.objectives import ClipPPOLoss

    from tests.support.torchrl_reference import torchrl_modules

    batch = random_batch((4,), steps=12, seed=19)
    value, actor = torchrl_modules()
    module = ClipPPOLoss(actor, value, clip_epsilon=(0.05, 0.1), entropy_coeff=0.03,
                         critic_coeff=0.5, loss_critic_type="l2")  # fmt: skip
    module.set_keys(sample_log_prob="sample_log_prob")
    out = module(as_tensordict(batch))
    result = client.compute_loss(
        as_tensordict(batch),
        loss=ClipPPO(clip_epsilon=(0.05, 0.1), entropy_coeff=0.03, critic_coeff=0.5,
                     loss_critic_type="l2"),
    )  # fmt: skip
    for key in ("loss_objective", "loss_critic", "loss_entropy", "clip_fraction"):
        assert result.metrics[key] == pytest.approx(float(out[key].detach()), rel=1e-5, abs=1e-6), (
            key
        )


# ---- updates (own server) ------------------------------------------------------------------------


def test_update_matches_torchrl_gradients_and_bumps_the_version(sgd_server: Any) -> None:
    batch = random_batch((4,), steps=16, seed=21)
    with AdvantageClient(sgd_server.target, timeout=60) as client:
        version, before = client.get_parameters(as_="torch")
        assert version == 0
        with pytest.raises(FailedPreconditionError) as info:
            client.compute_loss(
                as_tensordict(batch), apply_update=True, expected_parameter_version=5
            )
        assert "expected_parameter_version" in info.value.message
        assert client.get_parameters().version == 0  # nothing applied
        dry = client.compute_loss(as_tensordict(batch))
        assert not dry.updated and dry.grad_norm == 0.0 and dry.new_parameter_version == 0
        result = client.compute_loss(
            as_tensordict(batch), apply_update=True, expected_parameter_version=0
        )
        assert result.updated and result.grad_norm > 0.0
        assert (result.parameter_version, result.new_parameter_version) == (0, 1)
        assert result.loss == dry.loss  # computed before the step
        new_version, after = client.get_parameters(as_="torch")
        assert new_version == 1 == client.get_model().parameter_version
        assert client.compute_loss(as_tensordict(batch)).parameter_version == 1

    module, value, actor = torchrl_loss("ppo_clip")
    out = module(as_tensordict(batch))
    sum(v for k, v in out.items() if k.startswith("loss_")).backward()
    networks = {"value_network.": value.module, "actor_network.": actor.module[0].module}
    for prefix, network in networks.items():
        for key, parameter in network.named_parameters():
            gradient = (before[prefix + key] - after[prefix + key]) / LR  # SGD: Δθ = −lr·∇θ
            torch.testing.assert_close(gradient, parameter.grad, rtol=1e-3, atol=2e-6)


def test_kl_beta_adapts_only_with_updates(sgd_server: Any) -> None:
    batch = random_batch((4,), steps=16, seed=8)
    td = as_tensordict(batch)
    td["logits"] = torch.randn(4, 16, 2, generator=torch.Generator().manual_seed(3)) * 3
    with AdvantageClient(sgd_server.target, timeout=60) as client:
        assert client.compute_loss(td, loss="ppo_kl").metrics["beta"] == 2.0
        assert client.compute_loss(td, loss="ppo_kl").metrics["beta"] == 2.0
        assert client.compute_loss(td, loss="ppo_kl", apply_update=True).metrics["beta"] == 2.0
        assert client.compute_loss(td, loss="ppo_kl").metrics["beta"] == 4.0


# ---- errors --------------------------------------------------------------------------------------


def test_server_errors(client: AdvantageClient) -> None:
    batch = random_batch((2,), steps=6, seed=1)
    arrays = trajectory_kwargs(batch, "numpy")
    with pytest.raises(InvalidArgumentError) as info:
        client.compute_loss(
            loss="ppo_kl", behaviour_distribution={"loc": np.zeros((2, 6, 2), np.float32)}, **arrays
        )
    assert "behaviour_distribution" in info.value.message
    with pytest.raises(InvalidArgumentError) as info:
        client.compute_loss(
            advantage=np.zeros((2, 6)), value_target=np.zeros((2, 6)), **arrays
        )  # float64 with a float32 reward
    assert "advantage" in info.value.message
    with pytest.raises(InvalidArgumentError) as info:
        client.compute_loss(**{**arrays, "action": np.zeros((2, 5), np.int64)})
    assert "trajectory.action" in info.value.message
    with pytest.raises(NotFoundError):
        client.compute_loss(model="nope", **arrays)
    with pytest.raises(FailedPreconditionError) as stale:  # checked without an update too
        client.compute_loss(expected_parameter_version=7, **arrays)
    assert "is at version 0, not 7" in stale.value.message
    assert client.get_model().parameter_version == 0  # the shared server was never updated
