"""Shared set-up for the parity tests: one TorchRL actor/critic pair and the same data for ours."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import IndependentNormal, ProbabilisticActor, TanhNormal, ValueOperator

from service.distributions import make_distribution

F64 = torch.float64
TOL = {"atol": 1e-10, "rtol": 0.0}
KINDS = ("categorical", "normal", "tanh_normal", "tanh_normal_bounded")
OBS, ACT = 4, 3


@dataclass
class Setup:
    kind: str
    params_module: TensorDictModule
    actor: ProbabilisticActor
    critic: ValueOperator
    td: TensorDict
    bounds: dict[str, torch.Tensor]
    behaviour_state: dict[str, torch.Tensor]

    @property
    def dist_kind(self) -> str:
        return "tanh_normal" if self.kind.startswith("tanh") else self.kind

    def parameters(self) -> list[nn.Parameter]:
        return [*self.actor.parameters(), *self.critic.parameters()]

    def our_dist(self, td: TensorDict | None = None, *, stored: bool = False):
        """Distribution built by make_distribution from the actor net's raw output."""
        td = self.td if td is None else td
        # stored=True: the behaviour distribution, from the parameters stored at collection
        out = td if stored else self.params_module(td.select("observation").clone())
        keys = ("logits",) if self.kind == "categorical" else ("loc", "scale")
        params = {k: out[k] for k in keys}
        params.update(self.bounds)
        return make_distribution(self.dist_kind, params)

    def our_value(self, td: TensorDict | None = None) -> torch.Tensor:
        td = self.td if td is None else td
        return self.critic(td.select("observation").clone())["state_value"]

    def grads(self, loss: torch.Tensor) -> list[torch.Tensor]:
        params = self.parameters()
        for p in params:
            p.grad = None
        loss.backward()
        grads = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params]
        for p in params:
            p.grad = None
        return grads


def make_setup(kind: str, batch: tuple[int, ...] = (24,), seed: int = 0) -> Setup:
    """Actor/critic in float64, stored actions/log-probs/params, then perturbed actor weights."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    bounds: dict[str, torch.Tensor] = {}
    if kind == "categorical":
        net = nn.Sequential(nn.Linear(OBS, 8), nn.Tanh(), nn.Linear(8, ACT))
        params_module = TensorDictModule(net.double(), ["observation"], ["logits"])
        actor = ProbabilisticActor(
            params_module,
            in_keys=["logits"],
            distribution_class=torch.distributions.Categorical,
            return_log_prob=True,
        )
    else:
        net = nn.Sequential(nn.Linear(OBS, 8), nn.Tanh(), nn.Linear(8, 2 * ACT))
        net.append(NormalParamExtractor())
        params_module = TensorDictModule(net.double(), ["observation"], ["loc", "scale"])
        kwargs: dict = {}
        if kind == "normal":
            cls = IndependentNormal
        else:
            cls = TanhNormal
            if kind == "tanh_normal_bounded":
                bounds = {
                    "low": torch.tensor([-2.0, -1.0, 0.0], dtype=F64),
                    "high": torch.tensor([3.0, 1.0, 0.5], dtype=F64),
                }
                kwargs = dict(bounds)
        actor = ProbabilisticActor(
            params_module,
            in_keys=["loc", "scale"],
            distribution_class=cls,
            distribution_kwargs=kwargs,
            return_log_prob=True,
        )
    critic = ValueOperator(
        nn.Sequential(nn.Linear(OBS, 8), nn.Tanh(), nn.Linear(8, 1)).double(),
        in_keys=["observation"],
    )
    td = TensorDict(
        {"observation": torch.randn(*batch, OBS, dtype=F64, generator=gen)}, batch_size=batch
    )
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        actor(td)
        behaviour_state = {k: v.clone() for k, v in actor.state_dict().items()}
        old_value = critic(td.select("observation").clone())["state_value"]
        # perturb the actor and critic so ratios differ from 1 and some get clipped
        for p in [*actor.parameters(), *critic.parameters()]:
            p.add_(0.3 * torch.randn(p.shape, dtype=F64, generator=gen))
    td["state_value"] = old_value  # the values stored at collection time (for clip_value)
    td["advantage"] = torch.randn(*batch, 1, dtype=F64, generator=gen)
    td["value_target"] = old_value + torch.randn(*batch, 1, dtype=F64, generator=gen)
    return Setup(kind, params_module, actor, critic, td, bounds, behaviour_state)


def torchrl_total(out: TensorDict) -> torch.Tensor:
    return sum(v for k, v in out.items() if k.startswith("loss_"))


def assert_grads_close(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, **TOL)


def build_loss(cls, *args, **kwargs):
    """Build a TorchRL loss with float64 coefficient buffers (``.double()`` does not cast them)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    try:
        return cls(*args, functional=False, **kwargs)
    finally:
        torch.set_default_dtype(previous)
