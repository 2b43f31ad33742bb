"""Padded batches with a mask [*B, T] (TorchRL's ("collector", "mask")): over the wire, equal to
computing the unpadded segments one by one (TorchRL's functional estimators and ClipPPOLoss as
the oracle), whatever the padding holds; bad masks refused with nothing applied."""

from __future__ import annotations

import grpc
import pytest
import torch
from tensordict import TensorDict, cat
from tensordict.nn import set_composite_lp_aggregate
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value.functional import (
    generalized_advantage_estimate,
    td0_return_estimate,
    td_lambda_return_estimate,
    vtrace_advantage_estimate,
)

from service.models.demo import demo_model
from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support import composite as C
from tests.support.servers import running_server
from tests.support.wire import array, full_trajectory, random_batch, rpc_error, stub, tensor

F64 = torch.float64
LENGTHS = (9, 6, 2, 4)  # valid steps of each row; T = 9
T = 9
GAMMA, LMBDA = 0.97, 0.9


def _mask() -> torch.Tensor:
    return torch.arange(T).expand(len(LENGTHS), T) < torch.tensor(LENGTHS).unsqueeze(-1)


def _pad(valid: torch.Tensor, mask: torch.Tensor, filler: float) -> torch.Tensor:
    """`valid` with `filler` (NaN: nothing may read it) at padded steps."""
    shape = (*mask.shape, *(1,) * (valid.dim() - mask.dim()))
    return torch.where(mask.view(shape), valid, torch.full((), filler, dtype=valid.dtype))


def _segments():
    """Per-step data [4, 9] in float64 whose padding is garbage, and the ends of episodes
    inside the valid steps (row 1 ends truncated at its last valid step, row 3 is cut by the
    padding while its episode goes on)."""
    g = torch.Generator().manual_seed(11)
    shape = (len(LENGTHS), T)
    mask = _mask()
    done = torch.rand(shape, generator=g) < 0.2
    done[1, 5] = True  # truncated at the last valid step: bootstraps from its own next value
    done[3, 3] = False  # an episode cut by the padding: bootstraps from its own next value too
    terminated = done & (torch.rand(shape, generator=g) < 0.5)
    terminated[1, 5] = False
    return {
        "mask": mask,
        "reward": _pad(torch.randn(shape, generator=g, dtype=F64), mask, float("nan")),
        "state_value": _pad(torch.randn(shape, generator=g, dtype=F64), mask, float("nan")),
        "next_state_value": _pad(torch.randn(shape, generator=g, dtype=F64), mask, float("inf")),
        "done": done | (~mask & (torch.rand(shape, generator=g) < 0.5)),
        "terminated": terminated,
        "log_prob": _pad(torch.randn(shape, generator=g, dtype=F64) * 0.3 - 1, mask, 0.0),
        "sample_log_prob": _pad(torch.randn(shape, generator=g, dtype=F64) * 0.3 - 1, mask, 3.0),
    }


def _oracle(name: str, row: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """TorchRL's functional on one unpadded segment [1, L, 1] (γ, λ as float64 tensors: exact)."""
    gamma, lmbda = torch.tensor(GAMMA, dtype=F64), torch.tensor(LMBDA, dtype=F64)
    v, nv, r = row["state_value"], row["next_state_value"], row["reward"]
    d, k = row["done"], row["terminated"]
    if name == "gae":
        return generalized_advantage_estimate(gamma, lmbda, v, nv, r, d, k)
    if name == "td_lambda":
        target = td_lambda_return_estimate(gamma, lmbda, nv, r, d, k)
        return target - v, target
    if name == "td0":
        target = td0_return_estimate(gamma, nv, r, k)
        return target - v, target
    advantage, vs = vtrace_advantage_estimate(gamma, row["log_prob"], row["sample_log_prob"],
                                              v, nv, r, d, k)  # fmt: skip
    return advantage, vs


ESTIMATORS = {
    "gae": pb.ComputeAdvantageRequest(
        gae=pb.GAE(gamma=pb.Coefficient(scalar=GAMMA), lmbda=pb.Coefficient(scalar=LMBDA))
    ),
    "td_lambda": pb.ComputeAdvantageRequest(
        td_lambda=pb.TDLambda(
            gamma=pb.Coefficient(scalar=GAMMA), lmbda=pb.Coefficient(scalar=LMBDA)
        )
    ),
    "td0": pb.ComputeAdvantageRequest(td0=pb.TD0(gamma=pb.Coefficient(scalar=GAMMA))),
    "vtrace": pb.ComputeAdvantageRequest(vtrace=pb.VTrace(gamma=pb.Coefficient(scalar=GAMMA))),
}


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_masked_advantage_equals_segments_one_by_one(demo_server, name: str) -> None:
    data = _segments()
    request = pb.ComputeAdvantageRequest()
    request.CopyFrom(ESTIMATORS[name])
    request.trajectory.CopyFrom(
        pb.Trajectory(**{key: tensor(value) for key, value in data.items()})
    )
    response = stub(demo_server.target).ComputeAdvantage(request, timeout=60)
    advantage, target = array(response.advantage), array(response.value_target)
    mask = data["mask"]
    for b, length in enumerate(LENGTHS):
        row = {k: v[b : b + 1, :length].unsqueeze(-1) for k, v in data.items() if k != "mask"}
        expected_advantage, expected_target = _oracle(name, row)
        torch.testing.assert_close(advantage[b, :length], expected_advantage.view(-1))
        torch.testing.assert_close(target[b, :length], expected_target.view(-1))
    assert bool((advantage[~mask] == 0).all()) and bool((target[~mask] == 0).all())


def test_standardised_advantage_uses_the_valid_steps_only(demo_server) -> None:
    data = _segments()
    request = pb.ComputeAdvantageRequest(
        gae=pb.GAE(
            gamma=pb.Coefficient(scalar=GAMMA), lmbda=pb.Coefficient(scalar=LMBDA),
            average_gae=True,
        ),
        trajectory=pb.Trajectory(**{key: tensor(value) for key, value in data.items()}),
    )  # fmt: skip
    advantage = array(stub(demo_server.target).ComputeAdvantage(request, timeout=60).advantage)
    pieces = []
    for b, length in enumerate(LENGTHS):
        row = {k: v[b : b + 1, :length].unsqueeze(-1) for k, v in data.items() if k != "mask"}
        pieces.append(_oracle("gae", row)[0].view(-1))
    flat = torch.cat(pieces)
    expected = (flat - flat.mean()) / flat.std().clamp_min(1e-4)  # TorchRL's average_gae
    torch.testing.assert_close(advantage[data["mask"]], expected)


def test_network_values_ignore_nan_padding(demo_server) -> None:
    """The server's value network on a padded batch (NaN observations in the padding) gives each
    segment what the segment alone gets."""
    batch = random_batch((4,), steps=T, seed=3)
    mask = _mask()
    observation = _pad(batch.observation, mask, float("nan"))
    next_observation = _pad(batch.next_observation, mask, float("nan"))
    api = stub(demo_server.target)
    padded = full_trajectory(batch, mask=mask)
    padded.observation["observation"].CopyFrom(tensor(observation))
    padded.next_observation["observation"].CopyFrom(tensor(next_observation))
    padded.reward.CopyFrom(tensor(_pad(batch.reward, mask, float("nan"))))
    response = api.ComputeAdvantage(pb.ComputeAdvantageRequest(trajectory=padded), timeout=60)
    advantage = array(response.advantage)
    for b, length in enumerate(LENGTHS):
        alone = full_trajectory(
            type(batch)(**{k: v[b : b + 1, :length] for k, v in batch.__dict__.items()})
        )
        expected = array(
            api.ComputeAdvantage(pb.ComputeAdvantageRequest(trajectory=alone), timeout=60).advantage
        )
        torch.testing.assert_close(advantage[b : b + 1, :length], expected, rtol=1e-6, atol=1e-6)
    assert bool((array(response.state_value)[~mask] == 0).all())


def _unpadded_reference(data: C.Data, mask: torch.Tensor, value, actor):
    """TorchRL on the unpadded data: GAE on each segment alone (its functional, float64 γ, λ),
    then ClipPPOLoss (non-aggregate) over the concatenated valid steps."""
    critic, policy = C.torchrl_modules(value, actor)
    full = C.tensordict(data, per_head=True)
    parts = []
    for b, length in enumerate(LENGTHS):
        segment = full[b : b + 1, :length]
        with torch.no_grad():
            v = critic(segment.select("observation").clone())["state_value"]
            nv = critic(TensorDict({"observation": segment["next", "observation"]},
                                   segment.batch_size))["state_value"]  # fmt: skip
        advantage, target = generalized_advantage_estimate(
            torch.tensor(0.99, dtype=F64), torch.tensor(0.95, dtype=F64), v, nv,
            segment["next", "reward"], segment["next", "done"], segment["next", "terminated"],
        )  # fmt: skip
        segment = segment.clone()
        segment["advantage"], segment["value_target"] = advantage, target
        parts.append(segment.reshape(-1))
    flat = cat(parts, 0)
    assert flat.shape[0] == int(mask.sum())
    loss = ClipPPOLoss(policy, critic)
    loss.set_keys(action="action", sample_log_prob=C.PER_HEAD_LOG_PROBS)
    return loss(flat)


def test_masked_clip_ppo_equals_torchrl_on_the_unpadded_data() -> None:
    data = C.make_data((len(LENGTHS),), steps=T, seed=6)
    mask = _mask()
    padded = C.Data(**{k: v.clone() for k, v in data.__dict__.items()})
    padded.observation[~mask] = float("nan")
    padded.next_observation[~mask] = float("nan")
    padded.reward[~mask] = float("nan")
    padded.aim[~mask] = 7.0  # outside the head's support: padding is never scored
    padded.move[~mask] = -1
    server_model = C.model(seed=3)
    value, actor = C.networks(seed=3)
    with running_server(models={"two_heads": server_model}) as server:
        before = C.snapshot(server_model)
        torch.manual_seed(21)
        response = stub(server.target).ComputeLoss(
            pb.ComputeLossRequest(
                model_name="two_heads",
                trajectory=C.trajectory(padded, per_head=True, mask=mask),
                ppo_clip=pb.ClipPPOLoss(),
                apply_update=True,
            ),
            timeout=60,
        )
        after = C.snapshot(server_model)
    with set_composite_lp_aggregate(False):
        torch.manual_seed(21)
        out = _unpadded_reference(data, mask, value, actor)
    total = out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]
    for key in ("loss_objective", "loss_critic", "loss_entropy", "entropy", "kl_approx",
                "clip_fraction"):  # fmt: skip
        assert response.metrics[key] == pytest.approx(out[key].item(), rel=1e-5, abs=1e-9), key
    expected = out["composite_entropy", "action", "aim_entropy"].mean().item()
    assert response.metrics["composite_entropy.action.aim_entropy"] == pytest.approx(
        expected, rel=1e-5
    )
    params = [*value.parameters(), *actor.parameters()]
    grads = torch.autograd.grad(total, params)
    for old, new, grad in zip(before, after, grads, strict=True):
        torch.testing.assert_close((old - new) / C.LR, grad, rtol=1e-5, atol=1e-9)


def test_masked_impala_equals_the_unpadded_batch() -> None:
    """IMPALA (a sequence loss) on rows padded after L steps equals IMPALA on the [B, L] batch."""
    batch = random_batch((3,), steps=T, seed=8)
    length = 5
    mask = torch.arange(T).expand(3, T) < length
    short = type(batch)(**{k: v[:, :length].contiguous() for k, v in batch.__dict__.items()})
    with running_server(models={"demo": demo_model(torch.device("cpu"))}) as server:
        api = stub(server.target)
        padded = full_trajectory(batch, mask=mask)
        padded.reward.CopyFrom(tensor(_pad(batch.reward, mask, float("nan"))))
        masked = api.ComputeLoss(
            pb.ComputeLossRequest(trajectory=padded, impala=pb.ImpalaLoss()), timeout=60
        )
        whole = api.ComputeLoss(
            pb.ComputeLossRequest(trajectory=full_trajectory(short), impala=pb.ImpalaLoss()),
            timeout=60,
        )
    assert set(masked.metrics) == set(whole.metrics)
    for key, value in whole.metrics.items():
        assert masked.metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


BAD_MASKS = {
    "not boolean": (torch.ones(3, 16, dtype=torch.float32), "expected dtype bool"),
    "wrong shape": (torch.ones(3, 15, dtype=torch.bool), "expected shape [3, 16]"),
    "all padding": (torch.zeros(3, 16, dtype=torch.bool), "every step is masked"),
}


@pytest.mark.parametrize("case", list(BAD_MASKS))
def test_bad_mask_is_refused_and_nothing_applied(case: str) -> None:
    mask, detail = BAD_MASKS[case]
    model = demo_model(torch.device("cpu"))
    batch = random_batch((3,), steps=16, seed=2)
    with running_server(models={"demo": model}) as server:
        api = stub(server.target)
        for call, request in (
            (api.ComputeAdvantage, pb.ComputeAdvantageRequest(
                trajectory=full_trajectory(batch, mask=mask))),
            (api.ComputeLoss, pb.ComputeLossRequest(
                trajectory=full_trajectory(batch, mask=mask), apply_update=True)),
        ):  # fmt: skip
            error = rpc_error(call, request)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "trajectory.mask" in error.details() and detail in error.details()
        assert model.parameter_version == 0


def test_standardised_rewards_use_the_valid_steps_only(demo_server) -> None:
    data = _segments()
    request = pb.ComputeAdvantageRequest(
        td0=pb.TD0(gamma=pb.Coefficient(scalar=GAMMA), average_rewards=True),
        trajectory=pb.Trajectory(**{key: tensor(value) for key, value in data.items()}),
    )
    advantage = array(stub(demo_server.target).ComputeAdvantage(request, timeout=60).advantage)
    valid = data["reward"][data["mask"]]
    standardised = data["reward"].clone()
    standardised[data["mask"]] = (valid - valid.mean()) / valid.std().clamp_min(1e-5)
    for b, length in enumerate(LENGTHS):
        row = {k: v[b : b + 1, :length].unsqueeze(-1) for k, v in data.items() if k != "mask"}
        row["reward"] = standardised[b : b + 1, :length].unsqueeze(-1)
        expected, _ = _oracle("td0", row)
        torch.testing.assert_close(advantage[b, :length], expected.view(-1))
