"""Off-policy losses on server-held Q-networks and targets: option objects and the request.

    from advantage_client import DQN, SAC, AdvantageClient

    with AdvantageClient("localhost:50051") as client:
        step = client.compute_offpolicy_loss(
            model="demo_sac",
            loss=SAC(alpha_init=1.0, target_entropy="auto"),
            observation=obs, next_observation=next_obs, action=act,   # [B, ...] transitions
            reward=rew, done=done, terminated=terminated,
            apply_update=True, return_td_error=True,
        )
        step.metrics["loss_qvalue"], step.td_error, step.targets_updated

Each class stands for a TorchRL loss (DQNLoss → `DQN`, SACLoss → `SAC`, DiscreteSACLoss →
`DiscreteSAC`, DDPGLoss → `DDPG`, TD3Loss → `TD3`) and one message of the contract's ``loss``
oneof. Knobs are keyword-only; one left at None is not sent (the server applies TorchRL's
default, or the model's γ). The server holds the Q-networks, their targets, SAC's temperature
and the update counters; the target rule is the model's unless ``target_update`` says
otherwise (``tau=0.005`` for a soft update, ``hard_interval=N`` for TorchRL's HardUpdate).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from advantage_client._codec import decode_numpy, encode
from advantage_client._pb.advantage.v1 import advantage_pb2 as pb

__all__ = [
    "CQL",
    "DDPG",
    "DQN",
    "IQL",
    "OFFPOLICY_LOSSES",
    "REDQ",
    "SAC",
    "TD3",
    "TD3BC",
    "CrossQ",
    "DiscreteCQL",
    "DiscreteIQL",
    "DiscreteSAC",
    "OffPolicyLoss",
    "OffPolicyResult",
    "prepare_offpolicy_loss",
]

#: The contract's off-policy members of the ``loss`` oneof.
OFFPOLICY_LOSSES = (
    "dqn",
    "sac",
    "discrete_sac",
    "ddpg",
    "td3",
    "td3_bc",
    "iql",
    "discrete_iql",
    "cql",
    "discrete_cql",
    "redq",
    "crossq",
)
_DISTANCES = {
    "l1": pb.CRITIC_LOSS_L1,
    "l2": pb.CRITIC_LOSS_L2,
    "smooth_l1": pb.CRITIC_LOSS_SMOOTH_L1,
}
Distance = Literal["l1", "l2", "smooth_l1"]


@dataclass(frozen=True, kw_only=True, repr=False)
class OffPolicyLoss:
    """Base of the off-policy loss options (see the module docstring).

    Attributes:
        gamma: the discount, in [0, 1]; None = the model's default.
        loss_function: distance of the critic's loss: "l1", "l2" or "smooth_l1" (None = the
            loss's TorchRL default).
    """

    oneof_field: ClassVar[str]
    gamma: float | None = None
    loss_function: Distance | None = None

    def __post_init__(self) -> None:
        if not hasattr(type(self), "oneof_field"):
            raise TypeError(f"{type(self).__name__} is a base class; use one of its subclasses")
        for name, value in self.knobs().items():
            _check(name, value)

    def knobs(self) -> dict[str, Any]:
        """The knobs that are set (not None), by name."""
        values = ((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))
        return {name: value for name, value in values if value is not None}

    def __repr__(self) -> str:
        knobs = ", ".join(f"{name}={value!r}" for name, value in self.knobs().items())
        return f"{type(self).__name__}({knobs})"

    def fill(self, request: pb.ComputeLossRequest) -> None:
        """Select this loss in `request`'s ``loss`` oneof and write the set knobs."""
        message = getattr(request, self.oneof_field)
        message.SetInParent()
        fields = message.DESCRIPTOR.fields_by_name
        for name, value in self.knobs().items():
            if name == "loss_function":
                message.loss_function = _DISTANCES[value]
            elif name == "target_entropy" and value == "auto":
                continue  # the server's default
            elif fields[name].type == fields[name].TYPE_BOOL:
                setattr(message, name, bool(value))
            elif fields[name].cpp_type in (fields[name].CPPTYPE_INT64, fields[name].CPPTYPE_UINT64):
                setattr(message, name, int(value))
            else:
                setattr(message, name, float(value))


_UNIT = {"gamma", "expectile"}
_POSITIVE = {"alpha_init", "min_alpha", "max_alpha"}
_NON_NEGATIVE = {
    "policy_noise",
    "noise_clip",
    "target_entropy_weight",
    "temperature",
    "min_q_weight",
    "alpha",
}
_COUNTS = {"num_qvalue_nets", "policy_update_delay", "num_random", "sub_sample_len"}
_BOOLS = {
    "delay_value",
    "double_dqn",
    "fixed_alpha",
    "delay_qvalue",
    "delay_actor",
    "deterministic_backup",
}


def _check(name: str, value: Any) -> None:
    """Refuse a knob the server would refuse, naming it."""
    if name == "loss_function":
        if value not in _DISTANCES:
            raise ValueError(f"loss_function must be one of {sorted(_DISTANCES)}, got {value!r}")
        return
    if name in _BOOLS:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
        return
    if name == "target_entropy" and value == "auto":
        return
    if name in _COUNTS or name == "seed":
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < (1 if name in _COUNTS else 0):
            raise ValueError(f"{name} must be ≥ {1 if name in _COUNTS else 0}, got {value}")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value}")
    if name in _UNIT and not 0.0 <= number <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    if name in _POSITIVE and not number > 0.0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if name in _NON_NEGATIVE and not number >= 0.0:
        raise ValueError(f"{name} must be ≥ 0, got {value}")


@dataclass(frozen=True, kw_only=True, repr=False)
class DQN(OffPolicyLoss):
    """TorchRL's DQNLoss (TD(0) target) on the model's action-value head (ensemble of 1).

    Attributes:
        gamma, loss_function: see `OffPolicyLoss` (loss_function default "l2").
        delay_value: bootstrap from the server's target network (default True).
        double_dqn: the online network picks a′, the target scores it (default False).
    """

    oneof_field: ClassVar[str] = "dqn"
    delay_value: bool | None = None
    double_dqn: bool | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class _Temperature(OffPolicyLoss):
    alpha_init: float | None = None
    min_alpha: float | None = None
    max_alpha: float | None = None
    fixed_alpha: bool | None = None
    target_entropy: float | Literal["auto"] | None = None
    num_qvalue_nets: int | None = None
    delay_qvalue: bool | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class SAC(_Temperature):
    """TorchRL's SACLoss (v2) for tanh-normal actors and a state-action Q ensemble.

    Attributes:
        gamma, loss_function: see `OffPolicyLoss` (loss_function default "smooth_l1").
        alpha_init: α for a model whose temperature was never updated (default the manifest's,
            1.0); later calls use the server's α.
        min_alpha, max_alpha: bounds on α (default none).
        fixed_alpha: keep α fixed (default False).
        target_entropy: a float, or "auto" = −prod(action shape) (the default).
        num_qvalue_nets: checked against the model's ensemble size (TorchRL's default 2).
        delay_qvalue: bootstrap from the target Q-networks (default True).
        seed: seed of the server's sampler for this call (reproducible draws).
    """

    oneof_field: ClassVar[str] = "sac"
    seed: int | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class DiscreteSAC(_Temperature):
    """TorchRL's DiscreteSACLoss: categorical actor, action-value Q ensemble.

    Attributes:
        as `SAC`'s (no seed: no sampling), and target_entropy_weight: the weight of "auto"'s
        −log(1/num_actions) (default 0.98).
    """

    oneof_field: ClassVar[str] = "discrete_sac"
    target_entropy_weight: float | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class DDPG(OffPolicyLoss):
    """TorchRL's DDPGLoss; the policy is the actor's location (tanh-squashed for tanh-normal).

    Attributes:
        gamma, loss_function: see `OffPolicyLoss` (loss_function default "l2").
        delay_actor: bootstrap with the target actor (default False).
        delay_value: bootstrap with the target Q-network (default True).
    """

    oneof_field: ClassVar[str] = "ddpg"
    delay_actor: bool | None = None
    delay_value: bool | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class TD3(OffPolicyLoss):
    """TorchRL's TD3Loss with the delayed actor update on the server.

    Attributes:
        gamma, loss_function: see `OffPolicyLoss` (loss_function default "smooth_l1").
        policy_noise, noise_clip: target-policy smoothing (defaults 0.2, 0.5).
        delay_actor, delay_qvalue: bootstrap with the targets (defaults True).
        num_qvalue_nets: checked against the model's ensemble size.
        policy_update_delay: the actor learns every this many applied updates (default 2).
        seed: seed of the server's sampler for the smoothing noise.
    """

    oneof_field: ClassVar[str] = "td3"
    policy_noise: float | None = None
    noise_clip: float | None = None
    delay_actor: bool | None = None
    delay_qvalue: bool | None = None
    num_qvalue_nets: int | None = None
    policy_update_delay: int | None = None
    seed: int | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class TD3BC(TD3):
    """TorchRL's TD3BCLoss: TD3 plus a behaviour-cloning term in the actor's loss.

    Attributes:
        as `TD3`'s, and alpha: α of λ = α / mean|Q|, ≥ 0 (default 2.5).
    """

    oneof_field: ClassVar[str] = "td3_bc"
    alpha: float | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class IQL(OffPolicyLoss):
    """TorchRL's IQLLoss (continuous actions; the model needs its value network V(s)).

    Attributes:
        gamma, loss_function: see `OffPolicyLoss` (loss_function default "smooth_l1").
        temperature: β of the advantage weight exp(β·(Q − V)), ≥ 0 (default 1.0).
        expectile: τ of V's expectile regression, in [0, 1] (default 0.5).
        num_qvalue_nets: checked against the model's ensemble size.
    """

    oneof_field: ClassVar[str] = "iql"
    temperature: float | None = None
    expectile: float | None = None
    num_qvalue_nets: int | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class DiscreteIQL(IQL):
    """TorchRL's DiscreteIQLLoss (categorical actor, action-value heads, value network V(s)).

    Attributes:
        as `IQL`'s (expectile < 1).
    """

    oneof_field: ClassVar[str] = "discrete_iql"


@dataclass(frozen=True, kw_only=True, repr=False)
class CQL(_Temperature):
    """TorchRL's CQLLoss (continuous actions, a Q ensemble of 2, SAC's temperature).

    Attributes:
        as `SAC`'s, and temperature (T of the logsumexp, default 1.0), min_q_weight (default
        1.0), deterministic_backup (default True), num_random (proposals per kind, default 10).
    """

    oneof_field: ClassVar[str] = "cql"
    temperature: float | None = None
    min_q_weight: float | None = None
    deterministic_backup: bool | None = None
    num_random: int | None = None
    seed: int | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class REDQ(_Temperature):
    """TorchRL's REDQLoss (a large Q ensemble, a random target subset; α clamped to
    [min_alpha, max_alpha], defaults 0.1 and 10).

    Attributes:
        as `SAC`'s, and sub_sample_len: target members per call (default 2).
    """

    oneof_field: ClassVar[str] = "redq"
    sub_sample_len: int | None = None
    seed: int | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class CrossQ(OffPolicyLoss):
    """TorchRL's CrossQLoss: SAC without target networks, one joint critic pass.

    Attributes:
        as `SAC`'s, without delay_qvalue.
    """

    oneof_field: ClassVar[str] = "crossq"
    alpha_init: float | None = None
    min_alpha: float | None = None
    max_alpha: float | None = None
    fixed_alpha: bool | None = None
    target_entropy: float | Literal["auto"] | None = None
    num_qvalue_nets: int | None = None
    seed: int | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class DiscreteCQL(OffPolicyLoss):
    """TorchRL's DiscreteCQLLoss on a DQN model.

    Attributes:
        gamma, loss_function: see `OffPolicyLoss` (loss_function default "l2", halved).
        delay_value: bootstrap from the target network (default True).
    """

    oneof_field: ClassVar[str] = "discrete_cql"
    delay_value: bool | None = None


@dataclass(frozen=True)
class OffPolicyResult:
    """Result of `compute_offpolicy_loss`.

    Attributes:
        loss: the minimised total (the sum of the ``loss_*`` metrics; on TD3's critic-only
            updates, loss_qvalue).
        metrics: TorchRL's names (loss_qvalue, loss_actor, loss_alpha, alpha, entropy, …).
        td_error: the per-sample TD error [B] (numpy) with ``return_td_error``, else None.
        parameter_version / new_parameter_version: before and after the call.
        updated: whether an optimizer step was applied.
        targets_updated: whether that step moved the target networks.
        grad_norm: gradient norm before clipping (0 when not updated).
    """

    loss: float
    metrics: dict[str, float]
    td_error: np.ndarray | None
    model_name: str
    parameter_version: int
    new_parameter_version: int
    updated: bool
    targets_updated: bool
    grad_norm: float


Observation = Any  # an array [B, ...], or {input key: array}


def _observations(value: Observation, name: str) -> dict[str, pb.Tensor]:
    items = value.items() if isinstance(value, Mapping) else (("observation", value),)
    return {key: encode(array, name=f"{name}[{key!r}]") for key, array in items}


def prepare_offpolicy_loss(
    *,
    loss: OffPolicyLoss,
    observation: Observation,
    next_observation: Observation,
    action: Any,
    reward: Any,
    done: Any,
    terminated: Any = None,
    model: str = "",
    apply_update: bool = False,
    expected_parameter_version: int | None = None,
    return_td_error: bool = False,
    tau: float | None = None,
    hard_interval: int | None = None,
) -> pb.ComputeLossRequest:
    """The ComputeLossRequest for a batch of [B] transitions (observation arrays [B, ...] or a
    {key: array} mapping for several inputs; action [B, ...] float or [B] int indices)."""
    if not isinstance(loss, OffPolicyLoss):
        raise TypeError(
            "loss must be DQN(...), SAC(...), DiscreteSAC(...), DDPG(...) or TD3(...), got "
            f"{type(loss).__name__}"
        )
    if tau is not None and hard_interval is not None:
        raise ValueError("pass tau (soft target update) or hard_interval, not both")
    trajectory = pb.Trajectory(
        observation=_observations(observation, "observation"),
        next_observation=_observations(next_observation, "next_observation"),
        action=encode(action, name="action"),
        reward=encode(reward, name="reward"),
        done=encode(done, name="done"),
    )
    if terminated is not None:
        trajectory.terminated.CopyFrom(encode(terminated, name="terminated"))
    request = pb.ComputeLossRequest(
        model_name=model,
        trajectory=trajectory,
        apply_update=bool(apply_update),
        return_td_error=bool(return_td_error),
    )
    if expected_parameter_version is not None:
        request.expected_parameter_version = int(expected_parameter_version)
    if tau is not None:
        request.target_update.tau = float(tau)
    if hard_interval is not None:
        request.target_update.hard_interval = int(hard_interval)
    loss.fill(request)
    return request


def decode_offpolicy_response(response: pb.ComputeLossResponse) -> OffPolicyResult:
    """The response as an `OffPolicyResult`."""
    return OffPolicyResult(
        loss=response.loss,
        metrics=dict(response.metrics),
        td_error=decode_numpy(response.td_error, name="td_error")
        if response.HasField("td_error")
        else None,
        model_name=response.model_name,
        parameter_version=response.parameter_version,
        new_parameter_version=response.new_parameter_version,
        updated=response.updated,
        targets_updated=response.targets_updated,
        grad_norm=response.grad_norm,
    )
