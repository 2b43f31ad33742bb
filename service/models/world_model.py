"""A model's optional DreamerV3 world model: its manifest section, its networks, its training
state.

Manifest section (`model.json`, beside the actor and critic, which take the latents):

    "inputs": [{"name": "state", "shape": [64]}, {"name": "belief", "shape": [32]}],
    "world_model": {
      "observations": [{"name": "observation", "shape": [3]}],
      "num_categoricals": 8, "num_classes": 8, "belief_size": 32, "action_size": 1,
      "reward_bins": 255,
      "networks": {"prior": {"file": "prior.pt2"}, "posterior": {"file": "posterior.pt2"},
                   "encoder": {"file": "encoder.pt2"}, "decoder": {"file": "decoder.pt2"},
                   "reward": {"file": "reward.pt2"}, "continue": {"file": "continue.pt2"}},
      "optimizers": {"actor": {"lr": 3e-5, "max_grad_norm": 100.0},
                     "critic": {"lr": 3e-5, "max_grad_norm": 100.0},
                     "world_model": {"lr": 1e-4, "max_grad_norm": 1000.0}}
    }

The latents are the model's `inputs`, exactly two: `state` (the stochastic part, the
`num_categoricals` × `num_classes` one-hot samples flattened) and `belief` (the deterministic
recurrent state, `belief_size`). The networks, each taking rows [N, …] positionally (TorchRL's
`RSSMPriorV3` / `RSSMPosteriorV3` conventions):

    prior(state, belief, action)  → (prior_logits [N, C, K] or [N, C·K], state', belief')
                                     (samples state' itself, like RSSMPriorV3)
    posterior(belief, embedding)  → (posterior_logits, state)   (samples state)
    encoder(*observations)        → embedding [N, E]
    decoder(state, belief)        → reconstruction [N, *obs] (a tuple with several observations)
    reward(state, belief)         → logits [N, reward_bins] (two-hot), or [N, 1] with bins 0
    continue(state, belief)       → logit [N, 1] (optional: without it every step continues)

`action_size` is the width of the prior's action input: the action vector of a continuous
actor, the one-hot width of a categorical one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from service.models.manifest import (
    DISTRIBUTIONS,
    INPUT_DTYPES,
    OPTIMIZERS,
    InputSpec,
    ManifestError,
    NetworkFile,
    OptimizerSpec,
)

LATENTS = ("state", "belief")
REQUIRED_NETWORKS = ("prior", "posterior", "encoder", "decoder", "reward")
NETWORKS = (*REQUIRED_NETWORKS, "continue")
OPTIMIZER_GROUPS = ("actor", "critic", "world_model")
# DreamerV3's learning rates and gradient clipping (Hafner et al. 2023, table of hyperparameters).
DEFAULT_OPTIMIZERS = {
    "actor": OptimizerSpec(lr=3e-5, max_grad_norm=100.0),
    "critic": OptimizerSpec(lr=3e-5, max_grad_norm=100.0),
    "world_model": OptimizerSpec(lr=1e-4, max_grad_norm=1000.0),
}
assert DISTRIBUTIONS  # the actor's distribution is checked by the manifest itself


@dataclass(frozen=True)
class WorldModelSpec:
    """The manifest's `world_model` section (see the module docstring)."""

    observations: tuple[InputSpec, ...]
    num_categoricals: int
    num_classes: int
    belief_size: int
    action_size: int
    networks: dict[str, NetworkFile]
    reward_bins: int = 255
    optimizers: dict[str, OptimizerSpec] = field(default_factory=lambda: dict(DEFAULT_OPTIMIZERS))

    @property
    def state_size(self) -> int:
        """Width of the flattened stochastic latent."""
        return self.num_categoricals * self.num_classes

    def to_json_dict(self) -> dict[str, Any]:
        """The section as written to `model.json`."""
        return _section_json(self)

    @property
    def latent_shapes(self) -> dict[str, tuple[int, ...]]:
        """{latent name: per-row shape}."""
        return {"state": (self.state_size,), "belief": (self.belief_size,)}


def _positive(data: dict[str, Any], key: str, where: str, minimum: int = 1) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ManifestError(f"{where}.{key}: expected an integer ≥ {minimum}, got {value!r}")
    return value


def _optimizer(data: Any, where: str) -> OptimizerSpec:
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: expected an object, got {type(data).__name__}")
    try:
        spec = OptimizerSpec(**data)
    except TypeError as error:
        raise ManifestError(f"{where}: {error}") from error
    if spec.name not in OPTIMIZERS or not spec.lr > 0:
        raise ManifestError(f"{where}: expected name in {OPTIMIZERS} and lr > 0, got {data}")
    return spec


def parse_world_model(data: Any, inputs: tuple[InputSpec, ...], where: str) -> WorldModelSpec:
    """Validate the `world_model` section against the model's `inputs` (the latents)."""
    where = f"{where}.world_model"
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: expected an object, got {type(data).__name__}")
    known = {"observations", "num_categoricals", "num_classes", "belief_size", "action_size"}
    known |= {"networks", "reward_bins", "optimizers"}
    if unknown := sorted(set(data) - known):
        raise ManifestError(f"{where}: unknown keys {unknown}; expected some of {sorted(known)}")
    observations = []
    for i, item in enumerate(data.get("observations") or []):
        spot = f"{where}.observations[{i}]"
        shape = item.get("shape") if isinstance(item, dict) else None
        if not isinstance(shape, list) or not all(isinstance(v, int) and v > 0 for v in shape):
            raise ManifestError(f"{spot}.shape: expected a list of positive integers")
        dtype = item.get("dtype", "float32")
        if dtype not in INPUT_DTYPES or not isinstance(item.get("name"), str):
            raise ManifestError(f"{spot}: expected a name and a dtype in {INPUT_DTYPES}")
        observations.append(InputSpec(name=item["name"], shape=tuple(shape), dtype=dtype))
    if not observations:
        raise ManifestError(f"{where}.observations: at least one observation is required")
    networks_data = data.get("networks")
    if not isinstance(networks_data, dict):
        raise ManifestError(f"{where}.networks: expected an object naming {NETWORKS}")
    if missing := [n for n in REQUIRED_NETWORKS if n not in networks_data]:
        raise ManifestError(f"{where}.networks: missing {missing} (needs {REQUIRED_NETWORKS})")
    if unknown := sorted(set(networks_data) - set(NETWORKS)):
        raise ManifestError(f"{where}.networks: unknown {unknown}; expected some of {NETWORKS}")
    networks = {}
    for name, item in networks_data.items():
        if not isinstance(item, dict) or not isinstance(item.get("file"), str):
            raise ManifestError(f"{where}.networks.{name}: expected {{'file': <path>}}")
        networks[name] = NetworkFile(file=item["file"])
    optimizers = dict(DEFAULT_OPTIMIZERS)
    for name, item in (data.get("optimizers") or {}).items():
        if name not in OPTIMIZER_GROUPS:
            raise ManifestError(f"{where}.optimizers.{name}: expected one of {OPTIMIZER_GROUPS}")
        optimizers[name] = _optimizer(item, f"{where}.optimizers.{name}")
    spec = WorldModelSpec(
        observations=tuple(observations),
        num_categoricals=_positive(data, "num_categoricals", where),
        num_classes=_positive(data, "num_classes", where),
        belief_size=_positive(data, "belief_size", where),
        action_size=_positive(data, "action_size", where),
        networks=networks,
        reward_bins=_positive(data, "reward_bins", where, minimum=0)
        if "reward_bins" in data
        else 255,
        optimizers=optimizers,
    )
    if spec.reward_bins == 1:
        raise ManifestError(f"{where}.reward_bins: 0 (a scalar head) or at least 2")
    check_latents(spec, inputs, where)
    return spec


def check_latents(spec: WorldModelSpec, inputs: tuple[InputSpec, ...], where: str) -> None:
    """The model's inputs must be the latents `state` [C·K] and `belief` [belief_size]."""
    expected = [(name, shape) for name, shape in spec.latent_shapes.items()]
    actual = [(i.name, tuple(i.shape)) for i in inputs]
    if actual != expected or any(i.dtype not in ("float32", "float64") for i in inputs):
        raise ManifestError(
            f"{where}: a world model's actor and critic take the latents as inputs; expected "
            f"inputs {expected} (floating point), got {actual}"
        )


def world_model_json(spec: WorldModelSpec) -> dict[str, Any]:
    """The section as written to `model.json`."""
    return spec.to_json_dict()


def _section_json(spec: WorldModelSpec) -> dict[str, Any]:
    return {
        "observations": [
            {"name": o.name, "shape": list(o.shape), "dtype": o.dtype} for o in spec.observations
        ],
        "num_categoricals": spec.num_categoricals,
        "num_classes": spec.num_classes,
        "belief_size": spec.belief_size,
        "action_size": spec.action_size,
        "reward_bins": spec.reward_bins,
        "networks": {name: {"file": f.file} for name, f in spec.networks.items()},
        "optimizers": {
            name: {k: v for k, v in vars(o).items() if v is not None}
            for name, o in spec.optimizers.items()
        },
    }


@dataclass
class WorldModel:
    """The loaded world-model networks (names of `NETWORKS`) and their spec."""

    spec: WorldModelSpec
    networks: dict[str, nn.Module]

    def __getitem__(self, name: str) -> nn.Module:
        return self.networks[name]

    @property
    def has_continue(self) -> bool:
        """Whether a continue head predicts episode ends (else every imagined step continues)."""
        return "continue" in self.networks

    def parameters(self) -> list[nn.Parameter]:
        """Every trainable parameter, each once (networks may share modules)."""
        seen: dict[int, nn.Parameter] = {}
        for network in self.networks.values():
            seen.update({id(p): p for p in network.parameters() if p.requires_grad})
        return list(seen.values())


@dataclass
class DreamerTrainingState:
    """What a Dreamer learner keeps between updates, per model, committed only with an update:
    one optimizer per group (`OPTIMIZER_GROUPS`), the slow (EMA) critic and the return
    percentiles' EMAs (TorchRL's `retnorm.low` / `retnorm.high`, starting at 0)."""

    optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    slow_critic: nn.Module | None = None
    return_low: torch.Tensor | None = None
    return_high: torch.Tensor | None = None
    updates: int = 0
