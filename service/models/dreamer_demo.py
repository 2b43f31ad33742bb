"""The built-in DreamerV3 demo model: a small seeded RSSM world model for vector observations,
with a tanh-normal actor and a critic on its latents (served beside the `demo` model).

The RSSM follows TorchRL's `RSSMPriorV3` / `RSSMPosteriorV3` (Hafner et al. 2023, arXiv
2301.04104, eq. 3): the belief is h' = GRU(h, MLP([z, a])); the prior's logits read h'; the
posterior's logits read [h', embed(o)]; the stochastic state z is a one-hot sample of each of
`C` categoricals of `K` classes with straight-through gradients (the forward pass is the
sample, the backward pass the softmax's). The sampling draws its uniforms from torch's global
generator, as TorchRL's does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from service.models.manifest import ActionSpec, InputSpec, Manifest, NetworkFile
from service.models.model import Model
from service.models.world_model import WorldModel, WorldModelSpec

DREAMER_DEMO_NAME = "dreamer-demo"
DREAMER_DEMO_SEED = 0


@dataclass(frozen=True)
class DreamerSizes:
    """The demo RSSM's sizes."""

    observation: int = 3
    action: int = 1
    num_categoricals: int = 4
    num_classes: int = 4
    belief: int = 16
    hidden: int = 32
    embedding: int = 16
    reward_bins: int = 255

    @property
    def state(self) -> int:
        """Width of the flattened stochastic latent."""
        return self.num_categoricals * self.num_classes


def straight_through_sample(logits: torch.Tensor) -> torch.Tensor:
    """A one-hot sample of each categorical in `logits` [..., C, K] whose gradient is the
    softmax's (TorchRL's `_straight_through_categorical` without unimix): inverse-CDF sampling
    with one uniform per categorical."""
    probs = torch.softmax(logits, dim=-1)
    uniform = torch.rand(probs.shape[:-1], device=probs.device)
    index = (uniform.unsqueeze(-1) > probs.cumsum(-1)).sum(-1).clamp_max(probs.shape[-1] - 1)
    one_hot = torch.zeros_like(probs).scatter_(-1, index.unsqueeze(-1), 1.0)
    return probs + (one_hot - probs).detach()


class Prior(nn.Module):
    """(state, belief, action) → (prior logits [N, C, K], sampled state, belief')."""

    def __init__(self, sizes: DreamerSizes) -> None:
        super().__init__()
        self.sizes = sizes
        self.project = nn.Sequential(nn.Linear(sizes.state + sizes.action, sizes.hidden), nn.SiLU())
        self.cell = nn.GRUCell(sizes.hidden, sizes.belief)
        self.head = nn.Sequential(
            nn.Linear(sizes.belief, sizes.hidden), nn.SiLU(), nn.Linear(sizes.hidden, sizes.state)
        )

    def forward(
        self, state: torch.Tensor, belief: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        belief = self.cell(self.project(torch.cat([state, action], dim=-1)), belief)
        logits = self.head(belief).unflatten(-1, (self.sizes.num_categoricals, -1))
        return logits, straight_through_sample(logits).flatten(-2), belief


class Posterior(nn.Module):
    """(belief, embedding) → (posterior logits [N, C, K], sampled state)."""

    def __init__(self, sizes: DreamerSizes) -> None:
        super().__init__()
        self.sizes = sizes
        self.head = nn.Sequential(
            nn.Linear(sizes.belief + sizes.embedding, sizes.hidden),
            nn.SiLU(),
            nn.Linear(sizes.hidden, sizes.state),
        )

    def forward(
        self, belief: torch.Tensor, embedding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.head(torch.cat([belief, embedding], dim=-1))
        logits = logits.unflatten(-1, (self.sizes.num_categoricals, -1))
        return logits, straight_through_sample(logits).flatten(-2)


class LatentHead(nn.Module):
    """An MLP on the concatenated latents (state, belief): decoder, reward, continue, critic."""

    def __init__(self, sizes: DreamerSizes, out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(sizes.state + sizes.belief, sizes.hidden),
            nn.SiLU(),
            nn.Linear(sizes.hidden, out),
        )

    def forward(self, state: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([state, belief], dim=-1))


class TanhNormalActor(nn.Module):
    """(state, belief) → (loc, scale) of a tanh-normal action; scale = softplus(·) + 1e-4."""

    def __init__(self, sizes: DreamerSizes) -> None:
        super().__init__()
        self.net = LatentHead(sizes, 2 * sizes.action)

    def forward(
        self, state: torch.Tensor, belief: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw_scale = self.net(state, belief).chunk(2, dim=-1)
        return loc, nn.functional.softplus(raw_scale) + 1e-4


def dreamer_networks(
    sizes: DreamerSizes = DreamerSizes(), seed: int = DREAMER_DEMO_SEED
) -> tuple[dict[str, nn.Module], nn.Module, nn.Module]:
    """Seeded (world-model networks by name, critic, actor) for `sizes`."""
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        world = {
            "prior": Prior(sizes),
            "posterior": Posterior(sizes),
            "encoder": nn.Sequential(nn.Linear(sizes.observation, sizes.embedding), nn.SiLU()),
            "decoder": LatentHead(sizes, sizes.observation),
            "reward": LatentHead(sizes, sizes.reward_bins or 1),
            "continue": LatentHead(sizes, 1),
        }
        critic = LatentHead(sizes, 1)
        actor = TanhNormalActor(sizes)
        with torch.no_grad():  # DreamerV3 starts its two-hot reward head at 0 (uniform logits)
            world["reward"].net[-1].weight.zero_()
            world["reward"].net[-1].bias.zero_()
    finally:
        torch.random.set_rng_state(generator_state)
    return world, critic, actor


def dreamer_spec(sizes: DreamerSizes = DreamerSizes(), file: str = "<built-in>") -> WorldModelSpec:
    """The `world_model` manifest section for `sizes` (networks named `file`, or per network)."""
    names = ("prior", "posterior", "encoder", "decoder", "reward", "continue")
    return WorldModelSpec(
        observations=(InputSpec(name="observation", shape=(sizes.observation,)),),
        num_categoricals=sizes.num_categoricals,
        num_classes=sizes.num_classes,
        belief_size=sizes.belief,
        action_size=sizes.action,
        networks={name: NetworkFile(file=file) for name in names},
        reward_bins=sizes.reward_bins,
    )


def dreamer_manifest(sizes: DreamerSizes = DreamerSizes()) -> Manifest:
    """The demo Dreamer model's manifest: its inputs are the latents."""
    return Manifest(
        name=DREAMER_DEMO_NAME,
        inputs=(
            InputSpec(name="state", shape=(sizes.state,)),
            InputSpec(name="belief", shape=(sizes.belief,)),
        ),
        value_network=NetworkFile(file="<built-in>"),
        actor_network=NetworkFile(file="<built-in>"),
        action=ActionSpec(distribution="tanh_normal", shape=(sizes.action,)),
        world_model=dreamer_spec(sizes),
    )


def dreamer_demo_model(device: torch.device, sizes: DreamerSizes = DreamerSizes()) -> Model:
    """The demo Dreamer model on `device`."""
    world, critic, actor = dreamer_networks(sizes)
    manifest = dreamer_manifest(sizes)
    return Model(
        manifest=manifest,
        device=device,
        value_network=critic.to(device),
        actor_network=actor.to(device),
        world_model=WorldModel(
            spec=manifest.world_model, networks={k: v.to(device) for k, v in world.items()}
        ),
    )
