"""DreamerV3 fixtures: one set of networks wired both as a service `Model` (with its world
model) and as TorchRL 0.14.1's `DreamerV3ModelLoss` / `ActorLoss` / `ValueLoss` (the oracle)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict
from tensordict.nn import (
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
    TensorDictSequential,
)
from torch import nn
from torchrl.data import Bounded, Composite, Unbounded
from torchrl.envs.model_based.dreamer import DreamerEnv
from torchrl.modules import RSSMRolloutV3, WorldModelWrapper
from torchrl.modules.distributions import TanhNormal
from torchrl.objectives import (
    DreamerV3ActorLoss,
    DreamerV3Loss,
    DreamerV3ModelLoss,
    DreamerV3ValueLoss,
)
from torchrl.objectives.utils import ValueEstimators

from service.losses.dreamer import default_bins, two_hot_decode
from service.models.dreamer_demo import (
    DreamerSizes,
    LatentHead,
    Posterior,
    Prior,
    TanhNormalActor,
    dreamer_spec,
)
from service.models.manifest import ActionSpec, InputSpec, Manifest, NetworkFile
from service.models.model import Model
from service.models.world_model import WorldModel


class Decoded(nn.Module):
    """Two-hot logits → their scalar expectation [..., 1] (TorchRL's decoded reward key)."""

    def __init__(self, bins: int) -> None:
        super().__init__()
        self.bins = bins

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        support = default_bins(self.bins, dtype=logits.dtype, device=logits.device)
        return two_hot_decode(logits, support).unsqueeze(-1)


class Probability(nn.Module):
    """σ of a continue head's logit (TorchRL's continuation model writes probabilities)."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, state: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(state, belief))


@dataclass
class DreamerNets:
    """The shared networks."""

    sizes: DreamerSizes
    prior: nn.Module
    posterior: nn.Module
    encoder: nn.Module
    decoder: nn.Module
    reward: nn.Module
    continue_head: nn.Module | None
    critic: nn.Module
    actor: nn.Module


def make_nets(
    sizes: DreamerSizes | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    continue_head: bool = True,
    critic_bins: int = 0,
) -> DreamerNets:
    """The demo's RSSM (the maths of TorchRL's `RSSMPriorV3` / `RSSMPosteriorV3`, which runs
    its GRU in float32 and so cannot run in float64) with MLP heads, seeded, in `dtype`."""
    sizes = sizes or DreamerSizes()
    torch.manual_seed(seed)
    nets = DreamerNets(
        sizes=sizes,
        prior=Prior(sizes),
        posterior=Posterior(sizes),
        encoder=nn.Sequential(nn.Linear(sizes.observation, sizes.embedding), nn.SiLU()),
        decoder=LatentHead(sizes, sizes.observation),
        reward=LatentHead(sizes, sizes.reward_bins or 1),
        continue_head=LatentHead(sizes, 1) if continue_head else None,
        critic=LatentHead(sizes, critic_bins or 1),
        actor=TanhNormalActor(sizes),
    )
    with torch.no_grad():  # DreamerV3 starts the two-hot reward head near 0 (its paper: at 0)
        nets.reward.net[-1].weight.mul_(0.01)
        nets.reward.net[-1].bias.mul_(0.01)
    for name in vars(nets):
        value = getattr(nets, name)
        if isinstance(value, nn.Module):
            value.to(dtype)
    return nets


def service_model(nets: DreamerNets, name: str = "dreamer") -> Model:
    """The networks as a service model (in memory, as `load_model` would build it)."""
    sizes = nets.sizes
    spec = dreamer_spec(sizes)
    networks = {
        "prior": nets.prior,
        "posterior": nets.posterior,
        "encoder": nets.encoder,
        "decoder": nets.decoder,
        "reward": nets.reward,
    }
    if nets.continue_head is not None:
        networks["continue"] = nets.continue_head
    spec = type(spec)(**{**vars(spec), "networks": {k: NetworkFile("<memory>") for k in networks}})
    manifest = Manifest(
        name=name,
        inputs=(
            InputSpec(name="state", shape=(sizes.state,)),
            InputSpec(name="belief", shape=(sizes.belief,)),
        ),
        value_network=NetworkFile("<memory>"),
        actor_network=NetworkFile("<memory>"),
        action=ActionSpec(distribution="tanh_normal", shape=(sizes.action,)),
        world_model=spec,
    )
    return Model(
        manifest=manifest,
        device=torch.device("cpu"),
        value_network=nets.critic,
        actor_network=nets.actor,
        world_model=WorldModel(spec=spec, networks=networks),
    )


@dataclass
class TorchRLDreamer:
    """TorchRL's three losses (and the combined one) on the same networks."""

    model_loss: DreamerV3ModelLoss
    actor_loss: DreamerV3ActorLoss
    value_loss: DreamerV3ValueLoss
    combined: DreamerV3Loss


def torchrl_dreamer(
    nets: DreamerNets,
    *,
    horizon: int = 5,
    gamma: float = 0.99,
    lmbda: float = 0.95,
    use_continuation: bool = True,
    actor_kwargs: dict | None = None,
    value_kwargs: dict | None = None,
    model_kwargs: dict | None = None,
) -> TorchRLDreamer:
    """TorchRL's losses wired to `nets` (the RSSM rollout on its step-by-step path, which draws
    the prior's and the posterior's samples in turn, as the service does)."""
    sizes = nets.sizes
    dtype = next(nets.critic.parameters()).dtype
    prior = TensorDictModule(
        nets.prior,
        in_keys=["state", "belief", "action"],
        out_keys=[("next", "prior_logits"), ("next", "state"), ("next", "belief")],
    )
    posterior = TensorDictModule(
        nets.posterior,
        in_keys=[("next", "belief"), ("next", "encoded_latents")],
        out_keys=[("next", "posterior_logits"), ("next", "state")],
    )
    rollout = RSSMRolloutV3(prior, posterior, reset_key="is_init")
    rollout._fast_path = False
    latent_keys = [("next", "state"), ("next", "belief")]
    heads = [
        TensorDictModule(nets.encoder, [("next", "observation")], [("next", "encoded_latents")]),
        rollout,
        TensorDictModule(nets.decoder, latent_keys, [("next", "reco_pixels")]),
        TensorDictModule(nets.reward, latent_keys, [("next", "reward_logits")]),
    ]
    if nets.continue_head is not None:
        heads.append(TensorDictModule(nets.continue_head, latent_keys, [("next", "continue_pred")]))
    world_model = TensorDictSequential(*heads)
    model_loss = DreamerV3ModelLoss(world_model, **{"lambda_continue": 1.0, **(model_kwargs or {})})
    model_loss.set_keys(pixels="observation")

    transition = TensorDictModule(
        nets.prior, in_keys=["state", "belief", "action"], out_keys=["_", "state", "belief"]
    )
    reward = TensorDictSequential(
        TensorDictModule(nets.reward, ["state", "belief"], ["reward_logits"]),
        TensorDictModule(Decoded(sizes.reward_bins), ["reward_logits"], ["reward"]),
    )
    env = DreamerEnv(
        WorldModelWrapper(transition, reward),
        prior_shape=torch.Size([sizes.state]),
        belief_shape=torch.Size([sizes.belief]),
    )
    env.observation_spec = Composite(
        state=Unbounded(sizes.state, dtype=dtype), belief=Unbounded(sizes.belief, dtype=dtype)
    )
    env.state_spec = env.observation_spec.clone()
    env.action_spec = Bounded(-1, 1, (sizes.action,), dtype=dtype)
    env.reward_spec = Unbounded((1,), dtype=dtype)
    actor = ProbabilisticTensorDictSequential(
        TensorDictModule(nets.actor, ["state", "belief"], ["loc", "scale"]),
        ProbabilisticTensorDictModule(
            in_keys=["loc", "scale"],
            out_keys=["action"],
            distribution_class=TanhNormal,
            return_log_prob=True,
        ),
    )
    critic_width = nets.critic.net[-1].out_features
    if critic_width > 1:  # two-hot logits, and their decoded value for the λ-returns
        value = TensorDictSequential(
            TensorDictModule(nets.critic, ["state", "belief"], ["state_value_logits"]),
            TensorDictModule(Decoded(critic_width), ["state_value_logits"], ["state_value"]),
        )
    else:
        value = TensorDictModule(nets.critic, ["state", "belief"], ["state_value"])
    continuation = (
        TensorDictModule(Probability(nets.continue_head), ["state", "belief"], ["continuation"])
        if use_continuation and nets.continue_head is not None
        else None
    )
    actor_loss = DreamerV3ActorLoss(
        actor,
        value,
        env,
        continuation_model=continuation,
        imagination_horizon=horizon,
        **(actor_kwargs or {}),
    )
    actor_loss.make_value_estimator(ValueEstimators.TDLambda, gamma=gamma, lmbda=lmbda)
    actor_loss.retnorm.to(dtype)  # its return EMAs are float32 buffers by default
    value_loss = DreamerV3ValueLoss(value, actor_loss=actor_loss, **(value_kwargs or {}))
    combined = DreamerV3Loss(model_loss, actor_loss, value_loss, replay_value_loss_weight=0.0)
    return TorchRLDreamer(model_loss, actor_loss, value_loss, combined)


def replay_tensordict(
    observation: torch.Tensor,
    action: torch.Tensor,
    reward: torch.Tensor,
    is_first: torch.Tensor,
    terminated: torch.Tensor,
    sizes: DreamerSizes,
) -> TensorDict:
    """A replay batch [B, T] in TorchRL's layout (zero starting latents)."""
    batch, steps = reward.shape
    dtype = observation.dtype
    return TensorDict(
        {
            "state": torch.zeros(batch, steps, sizes.state, dtype=dtype),
            "belief": torch.zeros(batch, steps, sizes.belief, dtype=dtype),
            "action": action,
            "is_init": is_first.unsqueeze(-1),
            "next": {
                "observation": observation,
                "reward": reward.unsqueeze(-1),
                "done": terminated.unsqueeze(-1),
                "terminated": terminated.unsqueeze(-1),
            },
        },
        [batch, steps],
    )
