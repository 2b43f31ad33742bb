"""What `compute_advantage` and `compute_loss` compute, and with which knobs: option objects.

    from advantage_client import GAE, ClipPPO

    client.compute_advantage(batch, estimator=GAE(gamma=0.99, lmbda=0.95))
    client.compute_loss(batch, loss=ClipPPO(clip_epsilon=0.1), estimator=GAE(gamma=0.99))

Each class stands for a TorchRL estimator or loss (named after TorchRL's class: ClipPPOLoss →
`ClipPPO`, TDLambdaEstimator → `TDLambda`, …) and for one message of the contract's ``estimator``
or ``loss`` oneof. Knobs are keyword-only, as in TorchRL. A knob left at None is not sent, so the
server uses the model's default (γ, λ) or TorchRL's (the rest). The objects are frozen and check
their knobs when built: a wrong value raises ValueError, a wrong type TypeError, both naming the
knob.

Wherever an option object is taken, a name is too, meaning the object with every knob unset: the
service's ("gae", "td_lambda", "ppo_clip", …) or TorchRL's ("GAE", "TDLambda", "ClipPPOLoss", …),
case and underscores ignored, or a ``torchrl.objectives.ValueEstimators`` member.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, Union

from advantage_client._codec import to_wire
from advantage_client._knobs import build_estimator, build_loss, check_knobs, check_loss_knobs

if TYPE_CHECKING:
    import numpy as np
    import torch

    from advantage_client._pb.advantage.v1 import advantage_pb2 as pb

__all__ = [
    "A2C",
    "GAE",
    "KLPENPPO",
    "PPO",
    "TD0",
    "TD1",
    "ClipPPO",
    "EstimatorLike",
    "EstimatorOptions",
    "Impala",
    "LossLike",
    "LossOptions",
    "Reinforce",
    "TDLambda",
    "VTrace",
    "estimator_from",
    "loss_from",
]

#: γ or λ of TD(0), TD(1), TD(λ), GAE and V-trace: a float in [0, 1], or one value per step, an
#: array or tensor [*B, T] (or TorchRL's [*B, T, 1]) sent in the reward's dtype.
Coefficient = Union[float, "np.ndarray", "torch.Tensor"]
CriticLossType = Literal["l1", "l2", "smooth_l1"]


class _Options:
    """Knob access shared by the estimator and loss options.

    Every option class is a ``dataclass(frozen=True, kw_only=True, repr=False)``: frozen and
    keyword-only like TorchRL's knobs, and shown by the `__repr__` here (the set knobs only).
    """

    #: The field of the request's ``estimator`` or ``loss`` oneof this class fills.
    oneof_field: ClassVar[str]

    def knobs(self) -> dict[str, Any]:
        """The knobs that are set (not None), by name, in declaration order."""
        values = ((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))  # type: ignore[arg-type]
        return {name: value for name, value in values if value is not None}

    def __repr__(self) -> str:
        knobs = ", ".join(f"{name}={value!r}" for name, value in self.knobs().items())
        return f"{type(self).__name__}({knobs})"

    def _check_concrete(self) -> None:
        if not hasattr(type(self), "oneof_field"):
            raise TypeError(f"{type(self).__name__} is a base class; use one of its subclasses")


# --------------------------------------------------------------------------------------------
# Estimators
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, repr=False)
class EstimatorOptions(_Options):
    """Base of the estimator options: `TD0`, `TD1`, `TDLambda`, `GAE`, `VTrace`.

    Attributes:
        gamma: the discount γ, every estimator's knob: a float in [0, 1] or a per-step array
            [*B, T]; None = the model's default (0.99 unless its manifest says otherwise).
    """

    gamma: Coefficient | None = None

    def __post_init__(self) -> None:
        self._check_concrete()
        check_knobs(self.oneof_field, self.knobs())

    def fill(
        self, request: pb.ComputeAdvantageRequest | pb.ComputeLossRequest, reward: Any = None
    ) -> None:
        """Select this estimator in `request`'s ``estimator`` oneof and write the set knobs.

        Args:
            request: a ComputeAdvantageRequest or ComputeLossRequest.
            reward: the batch's reward, [*B, T]: a per-step γ or λ must have its shape and is
                sent in its dtype. Needed only for per-step coefficients.
        """
        wire = None if reward is None else to_wire(reward, name="reward")
        build_estimator(request, self.oneof_field, self.knobs(), wire)


@dataclass(frozen=True, kw_only=True, repr=False)
class TD0(EstimatorOptions):
    """TD(0), TorchRL's TD0Estimator: value_target = r + γ·V(s'), advantage = target − V(s).

    Attributes:
        gamma: see `EstimatorOptions`.
        average_rewards: standardise the rewards over the whole batch before estimating (TorchRL's
            default: False).
    """

    oneof_field: ClassVar[str] = "td0"
    average_rewards: bool | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class TD1(EstimatorOptions):
    """TD(1), TorchRL's TD1Estimator: the discounted return, bootstrapped at truncations and at
    the end of the segment.

    Attributes:
        gamma: see `EstimatorOptions`.
        average_rewards: as `TD0`'s.
    """

    oneof_field: ClassVar[str] = "td1"
    average_rewards: bool | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class TDLambda(EstimatorOptions):
    """TD(λ), TorchRL's TDLambdaEstimator: value_target = the λ-return G^λ.

    Attributes:
        gamma: see `EstimatorOptions`.
        lmbda: the trace decay λ, a float in [0, 1] or a per-step array [*B, T]; None = the
            model's default (0.95 unless its manifest says otherwise).
        average_rewards: as `TD0`'s.
    """

    oneof_field: ClassVar[str] = "td_lambda"
    lmbda: Coefficient | None = None
    average_rewards: bool | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class GAE(EstimatorOptions):
    """Generalised advantage estimation, TorchRL's GAE (the service's default estimator).

    Attributes:
        gamma: see `EstimatorOptions`.
        lmbda: the trace decay λ, as `TDLambda`'s.
        average_gae: standardise the advantage (whole-batch mean, unbiased std clamped at 1e-4);
            the value target is computed before. TorchRL's default: False.
    """

    oneof_field: ClassVar[str] = "gae"
    lmbda: Coefficient | None = None
    average_gae: bool | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class VTrace(EstimatorOptions):
    """V-trace (Espeholt et al. 2018), TorchRL's VTrace plus rlax/DI-engine's λ and ρ̄_pg.

    Needs ``action`` and ``sample_log_prob`` (the behaviour policy's), and ``log_prob`` or a
    model with an actor network.

    Attributes:
        gamma: see `EstimatorOptions`.
        rho_thresh: ρ̄, clip on the importance weights in the value target, > 0 (default 1.0).
        c_thresh: c̄, clip on the trace coefficients, > 0 (default 1.0).
        lmbda: λ in c = λ·min(c̄, ρ), a float in [0, 1] (default 1.0, TorchRL's V-trace).
        rho_pg_thresh: ρ̄_pg, clip on the policy-gradient advantage's weight, > 0 (default
            rho_thresh).
        average_adv: standardise the advantage (unbiased std clamped at 1e-5; default False).
    """

    oneof_field: ClassVar[str] = "vtrace"
    rho_thresh: float | None = None
    c_thresh: float | None = None
    lmbda: float | None = None
    rho_pg_thresh: float | None = None
    average_adv: bool | None = None


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, repr=False)
class LossOptions(_Options):
    """Base of the loss options: `ClipPPO`, `KLPENPPO`, `PPO`, `A2C`, `Reinforce`, `Impala`.

    Class attributes say what the loss needs from the batch (the request builder reads them, so
    a new loss is one class): the behaviour policy's log-probability, its distribution's
    parameters, and whether the loss computes its own targets (then it takes no estimator and no
    advantage).
    """

    needs_sample_log_prob: ClassVar[bool] = True
    needs_behaviour_distribution: ClassVar[bool] = False
    computes_own_targets: ClassVar[bool] = False

    def __post_init__(self) -> None:
        self._check_concrete()
        if isinstance(getattr(self, "clip_epsilon", None), list):  # frozen: keep it hashable
            object.__setattr__(self, "clip_epsilon", tuple(self.clip_epsilon))  # type: ignore[attr-defined]
        check_loss_knobs(self.oneof_field, self.knobs())

    def fill(self, request: pb.ComputeLossRequest) -> None:
        """Select this loss in `request`'s ``loss`` oneof and write the set knobs."""
        build_loss(request, self.oneof_field, self.knobs())


@dataclass(frozen=True, kw_only=True, repr=False)
class _CriticKnobs(LossOptions):
    """The critic knobs of every TorchRL-derived loss (see `PPO`)."""

    loss_critic_type: CriticLossType | None = None
    clip_value: float | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class _EntropyKnobs(LossOptions):
    """The entropy and critic weights of the actor-critic losses (see `PPO`)."""

    entropy_bonus: bool | None = None
    entropy_coeff: float | None = None
    critic_coeff: float | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class PPO(_EntropyKnobs, _CriticKnobs):
    """TorchRL's PPOLoss: −E[π/μ · A] with no clipping, plus critic and entropy terms.

    Attributes:
        entropy_bonus: add the entropy term (default True).
        entropy_coeff: weight of the entropy term, ≥ 0 (default 0.01).
        critic_coeff: weight of the critic term, ≥ 0 (default 1.0; 0 drops it).
        loss_critic_type: "l1", "l2" or "smooth_l1" (default, Huber with δ = 1).
        normalize_advantage: standardise the advantage inside the loss (default False).
        clip_value: clip the critic's prediction to old value ± clip_value, > 0 (default: no
            clipping). The old values are the sent state values, else the estimator's.
    """

    oneof_field: ClassVar[str] = "ppo"
    normalize_advantage: bool | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class ClipPPO(PPO):
    """TorchRL's ClipPPOLoss (the service's default loss): −E[min(ρA, clip(ρ, 1 − ε, 1 + ε)A)].

    Attributes:
        clip_epsilon: ε > 0 (default 0.2), or a ``(low, high)`` pair for an asymmetric clip
            [1 − low, 1 + high] (0 ≤ low < 1, high ≥ 0).
        entropy_bonus, entropy_coeff, critic_coeff, loss_critic_type, normalize_advantage,
            clip_value: as `PPO`'s.
    """

    oneof_field: ClassVar[str] = "ppo_clip"
    clip_epsilon: float | tuple[float, float] | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class KLPENPPO(PPO):
    """TorchRL's KLPENPPOLoss: −E[ρA] + β·KL(μ ‖ π), β adapting towards `dtarg`.

    Needs the behaviour policy's distribution parameters (``behaviour_distribution``). β is kept
    per model on the server and changes only when a call applies an update.

    Attributes:
        dtarg: the target KL, > 0 (default 0.01).
        beta: β for a model that has none yet, ≥ 0 (default 1.0); later calls use the server's.
        increment: β's multiplier when KL > 1.5·dtarg, > 0 (default 2.0).
        decrement: β's multiplier when KL < dtarg / 1.5, > 0 (default 0.5).
        entropy_bonus, entropy_coeff, critic_coeff, loss_critic_type, normalize_advantage,
            clip_value: as `PPO`'s.
    """

    oneof_field: ClassVar[str] = "ppo_kl"
    needs_behaviour_distribution: ClassVar[bool] = True
    dtarg: float | None = None
    beta: float | None = None
    increment: float | None = None
    decrement: float | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class A2C(_EntropyKnobs, _CriticKnobs):
    """TorchRL's A2CLoss: −E[log π(a|s) · A] plus critic and entropy terms.

    Attributes:
        entropy_bonus, entropy_coeff, critic_coeff, loss_critic_type, clip_value: as `PPO`'s
            (A2C has no normalize_advantage).
    """

    oneof_field: ClassVar[str] = "a2c"
    needs_sample_log_prob: ClassVar[bool] = False


@dataclass(frozen=True, kw_only=True, repr=False)
class Reinforce(_CriticKnobs):
    """TorchRL's ReinforceLoss: −E[log π(a|s) · A] and a critic loss.

    Attributes:
        loss_critic_type, clip_value: as `PPO`'s (the only knobs REINFORCE uses).
    """

    oneof_field: ClassVar[str] = "reinforce"
    needs_sample_log_prob: ClassVar[bool] = False


@dataclass(frozen=True, kw_only=True, repr=False)
class Impala(_EntropyKnobs):
    """IMPALA, DI-engine's vtrace_error: its own V-trace targets, so it takes no estimator.

    Attributes:
        gamma: the discount, in [0, 1]; None = the model's.
        lmbda: λ in c = λ·min(c̄, ρ), in [0, 1] (default 1.0).
        rho_thresh: ρ̄, > 0 (default 1.0).
        c_thresh: c̄, > 0 (default 1.0).
        rho_pg_thresh: ρ̄_pg, > 0 (default rho_thresh).
        entropy_bonus, entropy_coeff, critic_coeff: as `PPO`'s (DI-engine calls critic_coeff
            value_weight, often 0.5).
    """

    oneof_field: ClassVar[str] = "impala"
    computes_own_targets: ClassVar[bool] = True
    gamma: float | None = None
    lmbda: float | None = None
    rho_thresh: float | None = None
    c_thresh: float | None = None
    rho_pg_thresh: float | None = None


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------

#: An estimator: an option object or class, a name, or a TorchRL ValueEstimators member.
EstimatorLike = Union[EstimatorOptions, "type[EstimatorOptions]", str, enum.Enum]
#: A loss: an option object or class, or a name.
LossLike = Union[LossOptions, "type[LossOptions]", str]

OptionsT = TypeVar("OptionsT", bound=_Options)

_ESTIMATOR_CLASSES: tuple[type[EstimatorOptions], ...] = (TD0, TD1, TDLambda, GAE, VTrace)
_LOSS_CLASSES: tuple[type[LossOptions], ...] = (ClipPPO, KLPENPPO, PPO, A2C, Reinforce, Impala)


def _name_key(name: str) -> str:
    """ "TDLambda", "td_lambda", "TDLambdaEstimator" → "tdlambda"; "ClipPPOLoss" → "clipppo"."""
    key = name.lower().replace("_", "").replace("-", "")
    for suffix in ("estimator", "loss"):
        if key.endswith(suffix) and key != suffix:
            key = key[: -len(suffix)]
    return key


def _by_name(classes: tuple[type[OptionsT], ...]) -> dict[str, type[OptionsT]]:
    """Each class under its service name and its (TorchRL-like) class name."""
    return {_name_key(n): cls for cls in classes for n in (cls.oneof_field, cls.__name__)}


_ESTIMATOR_NAMES = _by_name(_ESTIMATOR_CLASSES)
_LOSS_NAMES = _by_name(_LOSS_CLASSES)


def _resolve(
    value: Any, base: type[OptionsT], names: dict[str, type[OptionsT]], what: str
) -> OptionsT:
    if isinstance(value, base):
        return value
    if isinstance(value, type) and issubclass(value, base) and value in names.values():
        return value()
    if isinstance(value, enum.Enum):  # e.g. torchrl.objectives.ValueEstimators.GAE
        name = value.name
    elif isinstance(value, str):
        name = value
    else:
        examples = ", ".join(f"{cls.__name__}(...)" for cls in dict.fromkeys(names.values()))
        raise TypeError(f"{what} must be {examples} or a name, got {type(value).__name__}")
    cls = names.get(_name_key(name))
    if cls is None:
        known = ", ".join(dict.fromkeys(c.oneof_field for c in names.values()))
        raise ValueError(f"unknown {what} {name!r}; expected one of {known} (or TorchRL's names)")
    return cls()


def estimator_from(value: EstimatorLike) -> EstimatorOptions:
    """The estimator options `value` stands for.

    Args:
        value: an option object (returned as is); an option class (``GAE`` → ``GAE()``); a
            name, the service's ("gae", "td0", "td1", "td_lambda", "vtrace") or TorchRL's
            ("GAE", "TD0", "TD1", "TDLambda", "VTrace", or "TDLambdaEstimator", …), case and
            underscores ignored; or a ``torchrl.objectives.ValueEstimators`` member, read by its
            name (torchrl is not imported). A name means every knob unset.

    Raises:
        ValueError: an unknown name (ValueEstimators.MAGAE: the service has no multi-agent GAE).
        TypeError: a value of another kind (a loss's options, a number, …).
    """
    return _resolve(value, EstimatorOptions, _ESTIMATOR_NAMES, "estimator")


def loss_from(value: LossLike) -> LossOptions:
    """The loss options `value` stands for.

    Args:
        value: an option object (returned as is); an option class (``ClipPPO`` →
            ``ClipPPO()``); or a name, the service's ("ppo_clip", "ppo_kl", "ppo", "a2c",
            "reinforce", "impala") or TorchRL's ("ClipPPOLoss", "KLPENPPOLoss", "PPOLoss",
            "A2CLoss", "ReinforceLoss"; or "ClipPPO", …), case and underscores ignored. A name
            means every knob unset.

    Raises:
        ValueError: an unknown name.
        TypeError: a value of another kind.
    """
    return _resolve(value, LossOptions, _LOSS_NAMES, "loss")
