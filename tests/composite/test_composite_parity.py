"""A two-head policy (categorical + tanh-normal) over the wire against TorchRL 0.14.1's
`ClipPPOLoss` and `A2CLoss` on a `ProbabilisticTensorDictSequential` actor with a
`CompositeDistribution`, in both log-probability modes: loss terms, per-head entropies and
gradients (float64, 1e-5 relative)."""

from __future__ import annotations

import pytest
import torch
from tensordict.nn import set_composite_lp_aggregate
from torchrl.modules.distributions.utils import composite_entropy
from torchrl.objectives import A2CLoss, ClipPPOLoss

from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support import composite as C
from tests.support.servers import running_server
from tests.support.wire import array, stub, tensor

RTOL = 1e-5


def _close(actual: float, expected: float) -> None:
    assert actual == pytest.approx(expected, rel=RTOL, abs=1e-9)


def _reference_grads(value, actor, total: torch.Tensor) -> list[torch.Tensor]:
    params = [*value.parameters(), *actor.parameters()]
    grads = torch.autograd.grad(total, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def _assert_gradients(before, after, expected) -> None:
    for old, new, grad in zip(before, after, expected, strict=True):
        torch.testing.assert_close((old - new) / C.LR, grad, rtol=RTOL, atol=1e-9)


@pytest.mark.parametrize("per_head", [False, True], ids=["aggregate", "non_aggregate"])
def test_clip_ppo_matches_torchrl(per_head: bool) -> None:
    data = C.make_data((3,), steps=10, seed=4)
    server_model = C.model(seed=1)
    value, actor = C.networks(seed=1)
    with running_server(models={"two_heads": server_model}) as server:
        before = C.snapshot(server_model)
        torch.manual_seed(77)  # the tanh head's Monte-Carlo entropy draws from it, as TorchRL's
        response = stub(server.target).ComputeLoss(
            pb.ComputeLossRequest(
                model_name="two_heads",
                trajectory=C.trajectory(data, per_head=per_head),
                ppo_clip=pb.ClipPPOLoss(),
                apply_update=True,
            ),
            timeout=60,
        )
        after = C.snapshot(server_model)
    with set_composite_lp_aggregate(not per_head):
        critic, policy = C.torchrl_modules(value, actor)
        loss = ClipPPOLoss(policy, critic)
        loss.set_keys(
            action="action",
            sample_log_prob=C.PER_HEAD_LOG_PROBS if per_head else "sample_log_prob",
        )
        torch.manual_seed(77)
        out = loss(C.tensordict(data, per_head=per_head))
    total = out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]
    for key in ("loss_objective", "loss_critic", "loss_entropy", "entropy", "kl_approx",
                "clip_fraction"):  # fmt: skip
        _close(response.metrics[key], out[key].item())
    _close(response.loss, total.item())
    heads = {k for k in response.metrics if k.startswith("composite_entropy.")}
    if per_head:  # TorchRL reports each head's entropy in the non-aggregate mode only
        assert heads == {
            "composite_entropy.action.move_entropy",
            "composite_entropy.action.aim_entropy",
        }
        for name in ("move", "aim"):
            expected = out["composite_entropy", "action", f"{name}_entropy"].mean().item()
            _close(response.metrics[f"composite_entropy.action.{name}_entropy"], expected)
    else:
        assert heads == set()
        assert ("composite_entropy", "action", "move_entropy") not in out.keys(True, True)
    _assert_gradients(before, after, _reference_grads(value, actor, total))


def test_a2c_matches_torchrl() -> None:
    """TorchRL 0.14.1's A2CLoss cannot draw its Monte-Carlo entropy from a composite with a
    categorical head (no rsample), so its objective and critic are compared with the entropy
    bonus off, and ours with the bonus on against TorchRL's `composite_entropy` (the per-head
    entropy its PPO losses use)."""
    data = C.make_data((2,), steps=12, seed=9)
    server_model = C.model(seed=2)
    value, actor = C.networks(seed=2)
    coeff = 0.05
    with running_server(models={"two_heads": server_model}) as server:
        before = C.snapshot(server_model)
        torch.manual_seed(5)
        response = stub(server.target).ComputeLoss(
            pb.ComputeLossRequest(
                model_name="two_heads",
                trajectory=C.trajectory(data, per_head=False),
                a2c=pb.A2CLoss(options=pb.PolicyLossOptions(entropy_coeff=coeff)),
                apply_update=True,
            ),
            timeout=60,
        )
        after = C.snapshot(server_model)
    critic, policy = C.torchrl_modules(value, actor)
    loss = A2CLoss(policy, critic, entropy_bonus=False)
    loss.set_keys(action="action")
    td = C.tensordict(data, per_head=False)
    out = loss(td)
    _close(response.metrics["loss_objective"], out["loss_objective"].item())
    _close(response.metrics["loss_critic"], out["loss_critic"].item())
    with set_composite_lp_aggregate(True):
        torch.manual_seed(5)
        dist = policy.get_dist(td.select("observation").clone())
        entropy = composite_entropy(dist, 1)
    loss_entropy = -coeff * entropy.mean()
    _close(response.metrics["entropy"], entropy.mean().item())
    _close(response.metrics["loss_entropy"], loss_entropy.item())
    assert not any(k.startswith("composite_entropy.") for k in response.metrics)
    total = out["loss_objective"] + out["loss_critic"] + loss_entropy
    _assert_gradients(before, after, _reference_grads(value, actor, total))


def test_vtrace_scores_composite_actions_with_the_summed_log_prob() -> None:
    """V-trace with the server's two-head actor equals V-trace given TorchRL's composite
    log-probability of the same actions (the sum over the heads) as `log_prob`."""
    data = C.make_data((2,), steps=7, seed=14)
    value, actor = C.networks(seed=3)
    _, policy = C.torchrl_modules(value, actor)
    td = C.tensordict(data, per_head=False)
    with set_composite_lp_aggregate(True), torch.no_grad():
        dist = policy.get_dist(td.select("observation").clone())
        log_prob = dist.log_prob(td.select("action"))
    log_prob = log_prob.get("sample_log_prob") if hasattr(log_prob, "get") else log_prob
    request = pb.ComputeAdvantageRequest(
        model_name="two_heads", vtrace=pb.VTrace(), trajectory=C.trajectory(data, per_head=False)
    )
    given = pb.ComputeAdvantageRequest()
    given.CopyFrom(request)
    given.trajectory.log_prob.CopyFrom(tensor(log_prob.reshape(2, 7)))
    with running_server(models={"two_heads": C.model(seed=3)}) as server:
        api = stub(server.target)
        scored = api.ComputeAdvantage(request, timeout=60)
        sent = api.ComputeAdvantage(given, timeout=60)
    torch.testing.assert_close(array(scored.advantage), array(sent.advantage))
    torch.testing.assert_close(array(scored.value_target), array(sent.value_target))
