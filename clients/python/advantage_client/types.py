"""Plain result and description types returned by the clients (no protobuf in the public API)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

from advantage_client._codec import dtype_name
from advantage_client._pb.advantage.v1 import advantage_pb2 as pb

__all__ = [
    "ActionSpec",
    "AdvantageResult",
    "InputSpec",
    "LossResult",
    "ModelInfo",
    "Parameters",
    "Timing",
]

T = TypeVar("T")

_DISTRIBUTIONS = {
    pb.DISTRIBUTION_UNSPECIFIED: None,
    pb.DISTRIBUTION_CATEGORICAL: "categorical",
    pb.DISTRIBUTION_NORMAL: "normal",
    pb.DISTRIBUTION_TANH_NORMAL: "tanh_normal",
    pb.DISTRIBUTION_COMPOSITE: "composite",
    pb.DISTRIBUTION_ONE_HOT_CATEGORICAL: "one_hot_categorical",
    pb.DISTRIBUTION_BERNOULLI: "bernoulli",
}


@dataclass(frozen=True)
class Timing:
    """Server-side time breakdown of one call, in milliseconds.

    For ComputeLoss, ``network_ms`` includes backward and the optimizer step, and ``encode_ms``
    is 0.
    """

    decode_ms: float
    network_ms: float
    estimator_ms: float
    encode_ms: float

    @classmethod
    def from_pb(cls, msg: pb.Timing) -> Timing:
        """Build from the wire message."""
        return cls(msg.decode_ms, msg.network_ms, msg.estimator_ms, msg.encode_ms)


@dataclass(frozen=True)
class AdvantageResult(Generic[T]):
    """Result of `compute_advantage` for array inputs; per-step tensors have shape [*B, T].

    `T` is `numpy.ndarray` (read-only views of the response bytes) for numpy inputs and
    `torch.Tensor` (writable copies, on the reward's device) for torch inputs. `state_value` and
    `next_state_value` are None when the request carried state values (the server did not compute
    them).
    """

    advantage: T
    value_target: T
    state_value: T | None
    next_state_value: T | None
    model_name: str
    parameter_version: int
    timing: Timing


@dataclass(frozen=True)
class LossResult:
    """Result of `compute_loss`.

    Attributes:
        loss: the total loss (sum of the ``loss_*`` metrics), the quantity minimised.
        metrics: every scalar the loss reports, TorchRL's names (``loss_objective``,
            ``loss_critic``, ``loss_entropy``, ``entropy``, ``kl_approx``, ``clip_fraction``,
            ``ESS``, ``explained_variance``, ``beta`` for ppo_kl, ...).
        parameter_version: version the loss was computed with.
        new_parameter_version: version after the call (``parameter_version + 1`` when updated).
        updated: whether an optimizer step was applied.
        grad_norm: gradient norm before clipping (0 when not updated).
    """

    loss: float
    metrics: dict[str, float]
    parameter_version: int
    new_parameter_version: int
    updated: bool
    grad_norm: float
    model_name: str
    timing: Timing


class Parameters(NamedTuple):
    """Result of `get_parameters`: unpacks as ``version, tensors = ...``.

    ``tensors`` maps "value_network.<key>" / "actor_network.<key>" (the networks' state_dict
    keys) to writable numpy arrays or torch tensors, in the server's order.
    """

    version: int
    tensors: dict[str, Any]


@dataclass(frozen=True)
class InputSpec:
    """One network input: its key, per-step shape (without [*B, T]) and dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @classmethod
    def from_pb(cls, msg: pb.TensorSpec) -> InputSpec:
        """Build from the wire message."""
        return cls(msg.name, tuple(msg.shape), dtype_name(msg.dtype))


@dataclass(frozen=True)
class ActionSpec:
    """The actor's policy: distribution (None without an actor), per-step shape, dtype name.

    A composite policy ("composite") has named `heads`, each an `ActionSpec` of its own (its
    `name` set); send their actions as ``action={name: array}``."""

    distribution: str | None
    shape: tuple[int, ...]
    dtype: str
    num_actions: int
    heads: tuple[ActionSpec, ...] = ()
    name: str = ""
    low: float = 0.0
    high: float = 0.0

    @classmethod
    def from_pb(cls, msg: pb.ActionSpec | pb.ActionHead) -> ActionSpec:
        """Build from the wire message (an ActionSpec or one of its heads)."""
        heads = getattr(msg, "heads", ())
        return cls(
            _DISTRIBUTIONS.get(msg.distribution),
            tuple(msg.shape),
            dtype_name(msg.dtype),
            msg.num_actions,
            tuple(cls.from_pb(head) for head in heads),
            getattr(msg, "name", ""),
            msg.low,
            msg.high,
        )


@dataclass(frozen=True)
class ModelInfo:
    """Description of a server-held model (see the proto's ModelInfo)."""

    name: str
    inputs: tuple[InputSpec, ...]
    has_value_network: bool
    has_actor_network: bool
    action: ActionSpec
    parameter_version: int
    gamma: float
    lmbda: float
    device: str
    parameter_dtype: str
    n_agents: int = 0  # agents per step the model declares (0 = not declared)
    # "shared" (one agent's rows at a time) or "per_agent" (the agents of a step together:
    # per-agent parameters or a centralised critic).
    agent_networks: str = "shared"

    @property
    def input_keys(self) -> tuple[str, ...]:
        """Observation keys the networks read, in order."""
        return tuple(spec.name for spec in self.inputs)

    @classmethod
    def from_pb(cls, msg: pb.ModelInfo) -> ModelInfo:
        """Build from the wire message."""
        return cls(
            name=msg.name,
            inputs=tuple(InputSpec.from_pb(s) for s in msg.inputs),
            has_value_network=msg.has_value_network,
            has_actor_network=msg.has_actor_network,
            action=ActionSpec.from_pb(msg.action),
            parameter_version=msg.parameter_version,
            gamma=msg.defaults.gamma,
            lmbda=msg.defaults.lmbda,
            device=msg.device,
            parameter_dtype=dtype_name(msg.parameter_dtype),
            n_agents=msg.n_agents,
            agent_networks=msg.agent_networks or "shared",
        )
