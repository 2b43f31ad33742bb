"""The loss a ComputeLoss request asks for: decoded from the `loss` oneof."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service import knobs
from service.errors import InvalidArgument
from service.models.manifest import Defaults
from service.pb.advantage.v1 import advantage_pb2 as pb

_CRITIC_LOSS = {
    pb.CRITIC_LOSS_UNSPECIFIED: "smooth_l1",
    pb.CRITIC_LOSS_L1: "l1",
    pb.CRITIC_LOSS_L2: "l2",
    pb.CRITIC_LOSS_SMOOTH_L1: "smooth_l1",
}
# Which shared PolicyLossOptions each TorchRL-derived loss takes.
_OPTION_NAMES = {
    "ppo": ("entropy_bonus", "entropy_coeff", "critic_coeff", "loss_critic_type",
            "normalize_advantage", "clip_value"),
    "a2c": ("entropy_bonus", "entropy_coeff", "critic_coeff", "loss_critic_type", "clip_value"),
    "reinforce": ("loss_critic_type", "clip_value"),
}  # fmt: skip
_OPTION_NAMES["ppo_clip"] = _OPTION_NAMES["ppo_kl"] = _OPTION_NAMES["ppo"]


@dataclass(frozen=True)
class LossSpec:
    """Which loss to compute and its keyword arguments for `service.losses`."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    # ppo_kl only: β for a model that has none yet.
    initial_beta: float = 1.0


def _policy_options(message: pb.PolicyLossOptions, name: str) -> dict[str, Any]:
    where = f"{name}.options"
    options: dict[str, Any] = {}
    if message.HasField("entropy_bonus"):
        options["entropy_bonus"] = message.entropy_bonus
    options |= knobs.non_negative(message, "entropy_coeff", where)
    options |= knobs.non_negative(message, "critic_coeff", where)
    if message.loss_critic_type not in _CRITIC_LOSS:
        raise InvalidArgument(f"{where}.loss_critic_type: unknown value {message.loss_critic_type}")
    options["loss_critic_type"] = _CRITIC_LOSS[message.loss_critic_type]
    options["normalize_advantage"] = message.normalize_advantage
    options |= knobs.positive(message, "clip_value", where)
    allowed = _OPTION_NAMES[name]
    return {key: value for key, value in options.items() if key in allowed}


def decode_loss(request: pb.ComputeLossRequest, defaults: Defaults) -> LossSpec:
    """Read the `loss` oneof (unset = ClipPPOLoss with TorchRL's defaults)."""
    name = request.WhichOneof("loss") or "ppo_clip"
    message = getattr(request, name)
    if name == "impala":
        options = {"gamma": defaults.gamma}
        for knob in ("gamma", "lmbda"):
            options |= knobs.unit_interval(message, knob, name)
        for knob in ("rho_thresh", "c_thresh", "rho_pg_thresh"):
            options |= knobs.positive(message, knob, name)
        for knob in ("entropy_coeff", "critic_coeff"):
            options |= knobs.non_negative(message, knob, name)
        if message.HasField("entropy_bonus"):
            options["entropy_bonus"] = message.entropy_bonus
        return LossSpec(name=name, options=options)
    options = _policy_options(message.options, name)
    initial_beta = 1.0
    if name == "ppo_clip":
        if message.HasField("clip_epsilon_low") != message.HasField("clip_epsilon_high"):
            raise InvalidArgument(
                "ppo_clip.clip_epsilon_low / clip_epsilon_high: set both or neither"
            )
        if message.HasField("clip_epsilon_low"):
            bounds = (message.clip_epsilon_low, message.clip_epsilon_high)
            if not all(bound >= 0.0 for bound in bounds) or bounds[0] >= 1.0:
                raise InvalidArgument(
                    f"ppo_clip.clip_epsilon_low/high: expected 0 ≤ low < 1 and high ≥ 0, "
                    f"got {bounds}"
                )
            options["clip_epsilon"] = bounds
        else:
            options |= knobs.positive(message, "clip_epsilon", name)
    if name == "ppo_kl":
        options |= knobs.positive(message, "dtarg", name)
        options |= knobs.positive(message, "increment", name)
        options |= knobs.positive(message, "decrement", name)
        if message.HasField("beta"):
            initial_beta = knobs.non_negative(message, "beta", name)["beta"]
    return LossSpec(name=name, options=options, initial_beta=initial_beta)
