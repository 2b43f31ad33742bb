"""One-hot categorical and Bernoulli heads: the maths against torch's own distributions, and a
three-head policy (one-hot move, Bernoulli fire, tanh-normal aim) over the wire against TorchRL's
ClipPPOLoss with a CompositeDistribution (non-aggregate mode, float64, 1e-5 relative)."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import (
    CompositeDistribution,
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
    set_composite_lp_aggregate,
)
from torch import distributions as D
from torch import nn
from torchrl.modules import OneHotCategorical, TanhNormal, ValueOperator
from torchrl.objectives import ClipPPOLoss

from service import distributions
from service.errors import ArgumentError
from service.models.manifest import (
    ActionHeadSpec,
    ActionSpec,
    InputSpec,
    Manifest,
    NetworkFile,
    OptimizerSpec,
)
from service.models.model import Model
from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support.composite import snapshot
from tests.support.servers import running_server
from tests.support.wire import stub, tensor

F64 = torch.float64
LR = 0.25


def test_one_hot_and_bernoulli_match_torch() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 3, generator=g, dtype=F64)
    other = torch.randn(5, 3, generator=g, dtype=F64)
    one_hot = distributions.make_distribution("one_hot_categorical", {"logits": logits})
    action = torch.nn.functional.one_hot(torch.tensor([0, 2, 1, 1, 0]), 3).to(F64)
    reference = D.OneHotCategorical(logits=logits)
    torch.testing.assert_close(distributions.log_prob(one_hot, action), reference.log_prob(action))
    torch.testing.assert_close(distributions.entropy(one_hot), reference.entropy())
    q = distributions.make_distribution("one_hot_categorical", {"logits": other})
    torch.testing.assert_close(
        distributions.kl_divergence(one_hot, q),
        D.kl_divergence(reference, D.OneHotCategorical(logits=other)),
    )
    bernoulli = distributions.make_distribution("bernoulli", {"logits": logits})
    bits = (torch.rand(5, 3, generator=g) < 0.5).to(F64)
    per_element = D.Bernoulli(logits=logits)
    torch.testing.assert_close(
        distributions.log_prob(bernoulli, bits), per_element.log_prob(bits).sum(-1)
    )
    torch.testing.assert_close(distributions.entropy(bernoulli), per_element.entropy().sum(-1))
    with pytest.raises(ArgumentError, match="one-hot rows"):
        distributions.log_prob(one_hot, torch.ones(5, 3, dtype=F64))
    with pytest.raises(ArgumentError, match="values 0 or 1"):
        distributions.log_prob(bernoulli, torch.full((5, 3), 0.5, dtype=F64))


class ThreeHeads(nn.Module):
    """obs [N, 4] → move logits [N, 3], fire logits [N, 2], aim loc/scale [N, 2]."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 16)
        self.move = nn.Linear(16, 3)
        self.fire = nn.Linear(16, 2)
        self.loc = nn.Linear(16, 2)
        self.scale = nn.Linear(16, 2)

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = torch.tanh(self.body(x))
        scale = nn.functional.softplus(self.scale(h)) + 0.05
        return self.move(h), self.fire(h), self.loc(h), scale

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        move, fire, loc, scale = self.parts(x)
        return {"action.move.logits": move, "action.fire.logits": fire,
                "action.aim.loc": loc, "action.aim.scale": scale}  # fmt: skip


class _Flat(nn.Module):
    def __init__(self, actor: ThreeHeads) -> None:
        super().__init__()
        self.actor = actor

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.actor.parts(x)


class IndependentBernoulli(D.Independent):
    """Bernoulli per element, independent over the last dimension (a composite head)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__(D.Bernoulli(logits=logits), 1)


def _networks() -> tuple[nn.Module, ThreeHeads]:
    torch.manual_seed(4)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).to(F64), ThreeHeads().to(F64)


def _three_head_model(low: float = -1.0, high: float = 1.0) -> Model:
    server_value, server_actor = _networks()
    manifest = Manifest(
        name="three",
        inputs=(InputSpec("observation", (4,), "float64"),),
        value_network=NetworkFile("<test>"),
        actor_network=NetworkFile("<test>"),
        action=ActionSpec(
            "composite",
            heads=(
                ActionHeadSpec("action.move", "one_hot_categorical", (3,), num_actions=3),
                ActionHeadSpec("action.fire", "bernoulli", (2,)),
                ActionHeadSpec("action.aim", "tanh_normal", (2,), low=low, high=high),
            ),
        ),
        optimizer=OptimizerSpec("sgd", lr=LR),
    )
    return Model(manifest, torch.device("cpu"), value_network=server_value,
                 actor_network=server_actor)  # fmt: skip


def _batch(B: int, T: int, low: float = -0.8, high: float = 0.8):
    g = torch.Generator().manual_seed(2)
    chain = torch.randn(B, T + 1, 4, generator=g, dtype=F64)
    done = torch.zeros(B, T, dtype=torch.bool)
    done[0, 3] = True
    heads = {
        "move": torch.nn.functional.one_hot(torch.randint(0, 3, (B, T), generator=g), 3).to(F64),
        "fire": (torch.rand(B, T, 2, generator=g) < 0.5).to(F64),
        "aim": low + torch.rand(B, T, 2, generator=g, dtype=F64) * (high - low),
    }
    log_probs = {k: -torch.rand(B, T, generator=g, dtype=F64) - 0.5 for k in heads}
    reward = torch.randn(B, T, generator=g, dtype=F64)
    message = pb.Trajectory(reward=tensor(reward), done=tensor(done), terminated=tensor(done))
    message.observation["observation"].CopyFrom(tensor(chain[:, :-1].contiguous()))
    message.next_observation["observation"].CopyFrom(tensor(chain[:, 1:].contiguous()))
    for key in heads:
        message.action_heads[f"action.{key}"].CopyFrom(tensor(heads[key]))
        message.sample_log_prob_heads[f"action.{key}"].CopyFrom(tensor(log_probs[key]))
    return chain, done, heads, log_probs, reward, message


def test_padding_of_one_hot_and_bounded_heads_is_never_scored() -> None:
    """IMPALA and V-trace score every row of a padded batch: padded one-hot rows of zeros and
    aim values outside (0.5, 2) are replaced by valid actions, never refused."""
    *_, message = _batch(2, 6, low=0.6, high=1.9)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    message.mask.CopyFrom(tensor(mask))
    for key, value in (("action.move", 0.0), ("action.aim", -5.0)):
        head = torch.frombuffer(bytearray(message.action_heads[key].raw_data), dtype=F64)
        head = head.view(*message.action_heads[key].shape).clone()
        head[1, 3:] = value
        message.action_heads[key].CopyFrom(tensor(head))
    with running_server(models={"three": _three_head_model(0.5, 2.0)}) as server:
        api = stub(server.target)
        loss = api.ComputeLoss(
            pb.ComputeLossRequest(model_name="three", trajectory=message, impala=pb.ImpalaLoss()),
            timeout=60,
        )
        advantage = api.ComputeAdvantage(
            pb.ComputeAdvantageRequest(model_name="three", trajectory=message, vtrace=pb.VTrace()),
            timeout=60,
        )
    assert loss.metrics["entropy"] > 0 and len(advantage.advantage.raw_data) == 2 * 6 * 8


def test_three_heads_match_torchrl() -> None:
    value, actor = _networks()
    model = _three_head_model()
    model.actor_network.load_state_dict(actor.state_dict())
    model.value_network.load_state_dict(value.state_dict())
    B, T = 2, 6
    chain, done, heads, log_probs, reward, message = _batch(B, T)
    with running_server(models={"three": model}) as server:
        before = snapshot(model)
        torch.manual_seed(11)
        response = stub(server.target).ComputeLoss(
            pb.ComputeLossRequest(model_name="three", trajectory=message, apply_update=True),
            timeout=60,
        )
        after = snapshot(model)
    with set_composite_lp_aggregate(False):
        outputs = [("move", "logits"), ("fire", "logits"), ("aim", "loc"), ("aim", "scale")]
        params = TensorDictModule(
            _Flat(actor),
            in_keys=["observation"],
            out_keys=[("params", "action", *key) for key in outputs],
        )
        head = ProbabilisticTensorDictModule(
            in_keys=["params"],
            out_keys=[("action", k) for k in heads],
            distribution_class=CompositeDistribution,
            distribution_kwargs={"distribution_map": {
                ("action", "move"): OneHotCategorical, ("action", "fire"): IndependentBernoulli,
                ("action", "aim"): TanhNormal,
            }},
            return_log_prob=True,
        )  # fmt: skip
        policy = ProbabilisticTensorDictSequential(params, head)
        loss = ClipPPOLoss(policy, ValueOperator(value, in_keys=["observation"]))
        loss.set_keys(action="action",
                      sample_log_prob=[("action", f"{k}_log_prob") for k in heads])  # fmt: skip
        action = {**heads, **{f"{k}_log_prob": v for k, v in log_probs.items()}}
        td = TensorDict(
            {"observation": chain[:, :-1], "action": action,
             "next": {"observation": chain[:, 1:], "reward": reward.unsqueeze(-1),
                      "done": done.unsqueeze(-1), "terminated": done.unsqueeze(-1)}},
            batch_size=(B, T),
        )  # fmt: skip
        torch.manual_seed(11)
        out = loss(td)
    for key in ("loss_objective", "loss_critic", "loss_entropy", "entropy", "kl_approx"):
        assert response.metrics[key] == pytest.approx(out[key].item(), rel=1e-5, abs=1e-9), key
    for key in heads:
        expected = out["composite_entropy", "action", f"{key}_entropy"].mean().item()
        got = response.metrics[f"composite_entropy.action.{key}_entropy"]
        assert got == pytest.approx(expected, rel=1e-5), key
    total = out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]
    grads = torch.autograd.grad(total, [*value.parameters(), *actor.parameters()])
    for old, new, grad in zip(before, after, grads, strict=True):
        torch.testing.assert_close((old - new) / LR, grad, rtol=1e-5, atol=1e-9)
