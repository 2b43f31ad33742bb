"""DreamerV3 on the server: option classes and the request/response of `dreamer_loss`.

    from advantage_client import AdvantageClient, DreamerImagination, DreamerV3, DreamerV3Actor

    with AdvantageClient("localhost:50051") as client:
        step = client.dreamer_loss(
            DreamerV3(actor=DreamerV3Actor(imagination=DreamerImagination(imagination_horizon=15))),
            model="dreamer-demo",
            replay={"observation": obs, "action": act, "reward": rew, "is_first": first},
            apply_update=True,
        )

`DreamerV3` is one learner step (world model on the replay, then actor and critic on rollouts
imagined from every posterior latent). `DreamerV3Actor` / `DreamerV3Value` take
``starting_latents={"state": [*B, C·K], "belief": [*B, D]}`` (the server imagines) or
``imagined={"state", "belief": [*B, H+1, …], "action": [*B, H, A], "reward": [*B, H],
"continuation": [*B, H+1]}`` (your own rollout); `DreamerV3Model` takes ``replay``. Unset knobs
take TorchRL 0.14.1's defaults (γ and λ: the model's). Pure (no I/O): shared by both clients.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from advantage_client._codec import decode_numpy, encode
from advantage_client._pb.advantage.v1 import advantage_pb2 as pb

__all__ = [
    "DreamerImagination",
    "DreamerResult",
    "DreamerV3",
    "DreamerV3Actor",
    "DreamerV3Model",
    "DreamerV3Value",
    "build_dreamer_request",
    "decode_dreamer_response",
]

_ENUMS = {
    "value_loss": "DREAMER_VALUE_LOSS_",
    "kl_mode": "DREAMER_KL_MODE_",
    "reco_loss": "DREAMER_RECO_LOSS_",
}


class _Knobs:
    """Writes the set knobs (not None) into the matching proto message, nested ones too."""

    def fill(self, message: Any) -> None:
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if value is None:
                continue
            if isinstance(value, _Knobs):
                value.fill(getattr(message, field.name))
                getattr(message, field.name).SetInParent()
            elif field.name in _ENUMS:
                setattr(message, field.name, _ENUMS[field.name] + str(value).upper())
            else:
                setattr(message, field.name, value)
        message.SetInParent()


@dataclass(frozen=True, kw_only=True)
class DreamerImagination(_Knobs):
    """The imagined rollout: horizon H (default 15, at most the server's
    --max-imagination-steps), γ and λ (default: the model's), `discount_loss` (default True)."""

    imagination_horizon: int | None = None
    gamma: float | None = None
    lmbda: float | None = None
    discount_loss: bool | None = None


@dataclass(frozen=True, kw_only=True)
class DreamerV3Actor(_Knobs):
    """TorchRL's `DreamerV3ActorLoss` knobs (entropy 3e-4, reparameterised unless
    `use_reinforce`, return normalisation with rate 0.01 over the 5th–95th percentiles)."""

    oneof_field: ClassVar[str] = "dreamer_v3_actor"
    imagination: DreamerImagination | None = None
    entropy_bonus: float | None = None
    use_reinforce: bool | None = None
    return_normalization: bool | None = None
    return_normalization_rate: float | None = None
    return_normalization_min_scale: float | None = None
    return_low_quantile: float | None = None
    return_high_quantile: float | None = None


@dataclass(frozen=True, kw_only=True)
class DreamerV3Value(_Knobs):
    """TorchRL's `DreamerV3ValueLoss` knobs (symlog_mse or two_hot; slow critic weight and
    its EMA rate, 0.02)."""

    oneof_field: ClassVar[str] = "dreamer_v3_value"
    imagination: DreamerImagination | None = None
    value_loss: Literal["symlog_mse", "two_hot"] | None = None
    slow_critic_regularization: float | None = None
    slow_critic_rate: float | None = None


@dataclass(frozen=True, kw_only=True)
class DreamerV3Model(_Knobs):
    """TorchRL's `DreamerV3ModelLoss` knobs (continue weight defaults to 1 here)."""

    oneof_field: ClassVar[str] = "dreamer_v3_model"
    lambda_kl: float | None = None
    lambda_reco: float | None = None
    lambda_reward: float | None = None
    lambda_continue: float | None = None
    kl_mode: Literal["balanced", "separate"] | None = None
    kl_alpha: float | None = None
    free_bits: float | None = None
    lambda_dynamic: float | None = None
    lambda_representation: float | None = None
    unimix: float | None = None
    reco_loss: Literal["l1", "l2"] | None = None
    reco_symlog: bool | None = None
    continue_target_scale: float | None = None


@dataclass(frozen=True, kw_only=True)
class DreamerV3(_Knobs):
    """One learner step: world model, then actor and critic (the actor's imagination)."""

    oneof_field: ClassVar[str] = "dreamer_v3"
    model: DreamerV3Model | None = None
    actor: DreamerV3Actor | None = None
    value: DreamerV3Value | None = None


DreamerLoss = DreamerV3 | DreamerV3Actor | DreamerV3Value | DreamerV3Model


@dataclass(frozen=True)
class DreamerResult:
    """Result of `dreamer_loss`: the total loss, every term and metric under TorchRL's names
    (``loss_model_kl``, ``loss_actor``, ``loss_value``, ``return_low``, ``lambda_return_mean``,
    ``grad_norm_actor``, …), the versions, and the posterior latents when asked for."""

    loss: float
    metrics: dict[str, float]
    model_name: str
    parameter_version: int
    new_parameter_version: int
    updated: bool
    grad_norm: float
    posterior_latents: dict[str, np.ndarray] | None


def _tensors(target: Any, arrays: Mapping[str, Any], where: str) -> None:
    for key, value in arrays.items():
        target[key].CopyFrom(encode(value, name=f"{where}[{key!r}]"))


def build_dreamer_request(
    loss: DreamerLoss,
    *,
    model: str = "",
    starting_latents: Mapping[str, Any] | None = None,
    replay: Mapping[str, Any] | None = None,
    imagined: Mapping[str, Any] | None = None,
    return_posterior: bool = False,
    apply_update: bool = False,
    expected_parameter_version: int | None = None,
) -> pb.ComputeLossRequest:
    """The ComputeLossRequest (see the module docstring for the arrays)."""
    if not isinstance(loss, (DreamerV3, DreamerV3Actor, DreamerV3Value, DreamerV3Model)):
        raise TypeError(f"loss: expected a DreamerV3 option object, got {type(loss).__name__}")
    request = pb.ComputeLossRequest(
        model_name=model, apply_update=apply_update, return_posterior=return_posterior
    )
    loss.fill(getattr(request, loss.oneof_field))
    if expected_parameter_version is not None:
        request.expected_parameter_version = expected_parameter_version
    if starting_latents is not None:
        _tensors(request.starting_latents, starting_latents, "starting_latents")
    if replay is not None:
        unknown = set(replay) - {"observation", "action", "reward", "is_first", "terminated"}
        if unknown:
            raise KeyError(f"replay: unknown keys {sorted(unknown)}")
        observation = replay["observation"]
        if not isinstance(observation, Mapping):
            observation = {"observation": observation}
        _tensors(request.replay.observation, observation, "replay.observation")
        for key in ("action", "reward", "is_first", "terminated"):
            if replay.get(key) is not None:
                getattr(request.replay, key).CopyFrom(encode(replay[key], name=f"replay.{key}"))
    if imagined is not None:
        _tensors(
            request.imagined.latents,
            {"state": imagined["state"], "belief": imagined["belief"]},
            "imagined.latents",
        )
        for key in ("action", "reward", "continuation"):
            if imagined.get(key) is not None:
                getattr(request.imagined, key).CopyFrom(
                    encode(imagined[key], name=f"imagined.{key}")
                )
    return request


def decode_dreamer_response(response: pb.ComputeLossResponse) -> DreamerResult:
    """The `DreamerResult` of a ComputeLossResponse."""
    posterior = {
        key: decode_numpy(tensor, name=f"posterior_latents[{key!r}]")
        for key, tensor in response.posterior_latents.items()
    }
    return DreamerResult(
        loss=response.loss,
        metrics=dict(response.metrics),
        model_name=response.model_name,
        parameter_version=response.parameter_version,
        new_parameter_version=response.new_parameter_version,
        updated=response.updated,
        grad_norm=response.grad_norm,
        posterior_latents=posterior or None,
    )
