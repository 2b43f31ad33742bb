"""The model manifest: `model.json` in each folder of a model repository.

Example (written by `service.models.export.export_model`):

    {
      "name": "cartpole",
      "inputs": [{"name": "observation", "shape": [4], "dtype": "float32"}],
      "value_network": {"file": "value.pt2"},
      "actor_network": {"file": "actor.pt2"},
      "action": {"distribution": "categorical", "shape": [], "num_actions": 2},
      "defaults": {"gamma": 0.99, "lmbda": 0.95},
      "optimizer": {"name": "adam", "lr": 0.0003, "max_grad_norm": 0.5},
      "batching": {"max_batch_rows": 65536, "max_queue_delay_us": 500}
    }

`optimizer` and `batching` are optional (defaults: Adam, lr 3e-4, no clipping; the server's
batching settings).

Networks take the inputs positionally in the listed order, each [N, *shape], and return:
value network → [N, 1] (or [N]); categorical actor → logits [N, num_actions]; normal and
tanh-normal actors → a (loc, scale) pair, each [N, *action_shape]. A composite actor
(`"action": {"distribution": "composite", "heads": [{"name": "move", "distribution":
"categorical", "num_actions": 3}, {"name": "aim", "distribution": "tanh_normal", "shape": [2]}]}`)
returns a mapping head → its parameters, or the flat mapping "<head>.<parameter>" → tensor
(`service/runtime/heads.py`). `"agents": n` declares that requests carry n agents per step.
With `"agent_networks": "per_agent"` (needs `agents`; default "shared") the value and actor
networks take every agent of a step together, inputs [N, n, *shape] → values [N, n, 1] (or
[N, n]) and parameters [N, n, *param_shape]: networks with per-agent parameters (TorchRL's
`MultiAgentMLP(share_params=False)`) or a centralised critic (MAPPO). "shared" networks see
one agent's row at a time, [N, *shape].
Files ending in `.pt2` are loaded with `torch.export.load`, files ending in `.pt` with
`torch.jit.load` (TorchScript).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from service.distributions import DistributionKind
from service.dtypes import TORCH_DTYPES
from service.models.qvalue import (
    AlphaSpec,
    QValueManifestError,
    QValueNetworkSpec,
    TargetUpdateSpec,
    parse_alpha,
    parse_qvalue_network,
    parse_target_update,
)

MANIFEST_NAME = "model.json"
INPUT_DTYPES = tuple(TORCH_DTYPES)
DISTRIBUTIONS = (*(kind.value for kind in DistributionKind), "composite")
HEAD_DISTRIBUTIONS = tuple(kind.value for kind in DistributionKind)
OPTIMIZERS = ("adam", "sgd")
# How the value and actor networks see the agents (manifest "agent_networks").
AGENT_NETWORKS = ("shared", "per_agent")


class ManifestError(ValueError):
    """A manifest is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class InputSpec:
    """One network input: its key in the trajectory and its per-step shape and dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class NetworkFile:
    """A serialised network, relative to the model folder."""

    file: str


@dataclass(frozen=True)
class ActionHeadSpec:
    """One head of a composite actor: its name (dots nest: "agents.action0"), distribution
    (categorical, normal, tanh-normal), per-step shape, choices, tanh-normal bounds."""

    name: str
    distribution: str
    shape: tuple[int, ...] = ()
    num_actions: int = 0
    low: float = -1.0
    high: float = 1.0


@dataclass(frozen=True)
class ActionSpec:
    """The actor's action distribution. `low`/`high` bound tanh-normal actions.

    `distribution` "composite": the policy is the product of named `heads` (TorchRL's
    `CompositeDistribution`); the actor returns a mapping head name → that head's parameters
    (`logits`, or `(loc, scale)` / `{"loc", "scale"}`).
    """

    distribution: str
    shape: tuple[int, ...] = ()
    num_actions: int = 0
    low: float = -1.0
    high: float = 1.0
    heads: tuple[ActionHeadSpec, ...] = ()


@dataclass(frozen=True)
class Defaults:
    """Estimator knobs used when a request leaves them unset (TorchRL's defaults)."""

    gamma: float = 0.99
    lmbda: float = 0.95


@dataclass(frozen=True)
class OptimizerSpec:
    """Optimizer for server-side updates (ComputeLoss with apply_update) over both networks."""

    name: str = "adam"
    lr: float = 3e-4
    max_grad_norm: float | None = None
    weight_decay: float = 0.0
    momentum: float = 0.0  # SGD only


@dataclass(frozen=True)
class BatchingSpec:
    """Dynamic batching of value-network evaluations across requests (Triton's knobs).

    `None` fields fall back to the server's settings (`--max-batch-rows` …).
    """

    enabled: bool | None = None
    max_batch_rows: int | None = None
    max_queue_delay_us: int | None = None
    max_queue_size: int | None = None


@dataclass(frozen=True)
class Manifest:
    """Everything the server needs to load and describe one model."""

    name: str
    inputs: tuple[InputSpec, ...]
    value_network: NetworkFile | None = None
    actor_network: NetworkFile | None = None
    action: ActionSpec | None = None
    # Agents per step the networks serve (the wire's n_agents); 0 = not declared, any count.
    agents: int = 0
    # "shared": networks take one agent's rows [N, *shape]; "per_agent": they take the agents
    # of a step together [N, agents, *shape] (per-agent parameters, centralised critics).
    agent_networks: str = "shared"
    defaults: Defaults = field(default_factory=Defaults)
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    batching: BatchingSpec = field(default_factory=BatchingSpec)
    # A `service.models.world_model.WorldModelSpec` (DreamerV3), read by `models.loading`.
    world_model: Any = None
    # Off-policy (see `service.models.qvalue`): Q-networks, their targets' rule, SAC's α.
    qvalue_network: QValueNetworkSpec | None = None
    target_update: TargetUpdateSpec = field(default_factory=TargetUpdateSpec)
    alpha: AlphaSpec = field(default_factory=AlphaSpec)

    def to_json(self) -> str:
        """Serialise (tuples become lists; absent networks are omitted)."""
        world_model = self.world_model
        data = {k: v for k, v in asdict(replace(self, world_model=None)).items() if v is not None}
        if world_model is not None:
            data["world_model"] = world_model.to_json_dict()
        if self.qvalue_network is None:  # the off-policy sections mean nothing without one
            data.pop("target_update")
            data.pop("alpha")
        if self.agent_networks == "shared":  # the default; manifests stay as they were
            data.pop("agent_networks")
        return json.dumps(data, indent=2) + "\n"

    def save(self, folder: Path) -> Path:
        """Write `model.json` into `folder`."""
        path = folder / MANIFEST_NAME
        path.write_text(self.to_json())
        return path


def _require(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise ManifestError(f"{where}: missing key {key!r}")
    value = data[key]
    if not isinstance(value, kind):
        raise ManifestError(f"{where}.{key}: expected {kind}, got {type(value).__name__}")
    return value


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(v, int) and v > 0 for v in value):
        raise ManifestError(f"{where}: expected a list of positive integers, got {value!r}")
    return tuple(value)


def _section(kind: type, data: dict[str, Any], key: str, where: str) -> Any:
    """Build the dataclass `kind` from `data[key]` (absent = defaults), naming unknown keys."""
    section = data.get(key) or {}
    if not isinstance(section, dict):
        raise ManifestError(f"{where}.{key}: expected an object, got {type(section).__name__}")
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ManifestError(
            f"{where}.{key}: unknown keys {unknown}; expected some of {sorted(known)}"
        )
    return kind(**section)


def parse_manifest(data: dict[str, Any], where: str) -> Manifest:
    """Validate a decoded manifest; `where` names its file in error messages."""
    name = _require(data, "name", str, where)
    inputs = []
    for i, item in enumerate(_require(data, "inputs", list, where)):
        spot = f"{where}.inputs[{i}]"
        dtype = item.get("dtype", "float32")
        if dtype not in INPUT_DTYPES:
            raise ManifestError(f"{spot}.dtype: expected one of {INPUT_DTYPES}, got {dtype!r}")
        shape = _shape(item.get("shape"), f"{spot}.shape")
        inputs.append(InputSpec(name=_require(item, "name", str, spot), shape=shape, dtype=dtype))
    if not inputs:
        raise ManifestError(f"{where}.inputs: at least one input is required")
    networks = {}
    for key in ("value_network", "actor_network"):
        if data.get(key) is not None:
            networks[key] = NetworkFile(file=_require(data[key], "file", str, f"{where}.{key}"))
    declared_action = data.get("action")
    actor_actions = (
        declared_action.get("num_actions", 0) if isinstance(declared_action, dict) else 0
    )
    try:
        qvalue = parse_qvalue_network(data, where, actor_actions)
        target_update = parse_target_update(data, where)
        alpha = parse_alpha(data, where)
    except (QValueManifestError, TypeError) as error:
        raise ManifestError(str(error)) from error
    if not networks and qvalue is None:
        raise ManifestError(f"{where}: needs a value_network, an actor_network or a qvalue_network")
    action = None
    if "actor_network" in networks or (qvalue is not None and qvalue.kind == "state_action"):
        spec = _require(data, "action", dict, where)
        distribution = _require(spec, "distribution", str, f"{where}.action")
        if distribution not in DISTRIBUTIONS:
            raise ManifestError(
                f"{where}.action.distribution: expected one of {DISTRIBUTIONS}, "
                f"got {distribution!r}"
            )
        if distribution == "composite":
            action = _composite_action(spec, f"{where}.action")
        else:
            action = _action_head(spec, f"{where}.action", ActionSpec)
    agents = data.get("agents", 0)
    if isinstance(agents, bool) or not isinstance(agents, int) or agents < 0:
        raise ManifestError(f"{where}.agents: expected a non-negative integer, got {agents!r}")
    agent_networks = data.get("agent_networks", "shared")
    if agent_networks not in AGENT_NETWORKS:
        raise ManifestError(
            f"{where}.agent_networks: expected one of {AGENT_NETWORKS}, got {agent_networks!r}"
        )
    if agent_networks == "per_agent" and not agents:
        raise ManifestError(
            f"{where}.agent_networks: 'per_agent' needs the agent count; set \"agents\" to n > 0"
        )
    if agent_networks == "per_agent" and (qvalue is not None or data.get("world_model")):
        raise ManifestError(
            f"{where}.agent_networks: 'per_agent' applies to value and actor networks only "
            "(not to Q-networks or world models)"
        )
    defaults = _section(Defaults, data, "defaults", where)
    optimizer = _section(OptimizerSpec, data, "optimizer", where)
    if optimizer.name not in OPTIMIZERS:
        raise ManifestError(
            f"{where}.optimizer.name: expected one of {OPTIMIZERS}, got {optimizer.name!r}"
        )
    if not optimizer.lr > 0:
        raise ManifestError(f"{where}.optimizer.lr: expected a value > 0, got {optimizer.lr}")
    batching = _section(BatchingSpec, data, "batching", where)
    for knob in ("gamma", "lmbda"):
        if not 0.0 <= getattr(defaults, knob) <= 1.0:
            raise ManifestError(f"{where}.defaults.{knob}: expected a value in [0, 1]")
    return Manifest(
        name=name,
        inputs=tuple(inputs),
        action=action,
        agents=agents,
        agent_networks=agent_networks,
        defaults=defaults,
        optimizer=optimizer,
        batching=batching,
        qvalue_network=qvalue,
        target_update=target_update,
        alpha=alpha,
        **networks,
    )


def _action_head(spec: dict[str, Any], where: str, kind: type, **extra: Any) -> Any:
    """An `ActionSpec` (single head) or `ActionHeadSpec` from its manifest object."""
    distribution = _require(spec, "distribution", str, where)
    if distribution not in HEAD_DISTRIBUTIONS:
        raise ManifestError(
            f"{where}.distribution: expected one of {HEAD_DISTRIBUTIONS}, got {distribution!r}"
        )
    num_actions = int(spec.get("num_actions", 0))
    shape = tuple(spec.get("shape", []))
    if distribution == "one_hot_categorical":  # the action is a one-hot row [num_actions]
        if shape and shape != (num_actions,):
            raise ManifestError(f"{where}.shape: one_hot_categorical's is [num_actions]")
        shape = (num_actions,)
    head = kind(
        distribution=distribution,
        shape=shape,
        num_actions=num_actions,
        low=float(spec.get("low", -1.0)),
        high=float(spec.get("high", 1.0)),
        **extra,
    )
    if distribution in ("categorical", "one_hot_categorical") and head.num_actions < 1:
        raise ManifestError(f"{where}.num_actions: {distribution} needs a positive count")
    if distribution != "categorical" and not head.shape:
        raise ManifestError(f"{where}.shape: {distribution} needs an action shape")
    if distribution == "tanh_normal" and not head.high > head.low:
        raise ManifestError(f"{where}.high: expected high > low, got {head.low}, {head.high}")
    return head


def _composite_action(spec: dict[str, Any], where: str) -> ActionSpec:
    """A composite `ActionSpec`: `heads`, a non-empty list of uniquely named heads."""
    items = _require(spec, "heads", list, where)
    if not items:
        raise ManifestError(f"{where}.heads: a composite action needs at least one head")
    heads = []
    for i, item in enumerate(items):
        spot = f"{where}.heads[{i}]"
        if not isinstance(item, dict):
            raise ManifestError(f"{spot}: expected an object, got {type(item).__name__}")
        name = _require(item, "name", str, spot)
        if not name or name in {head.name for head in heads}:
            raise ManifestError(f"{spot}.name: expected a unique non-empty name, got {name!r}")
        heads.append(_action_head(item, spot, ActionHeadSpec, name=name))
    return ActionSpec(distribution="composite", heads=tuple(heads))


def load_manifest(folder: Path) -> Manifest:
    """Read and validate `folder/model.json`."""
    path = folder / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ManifestError(f"{path}: {error}") from error
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a JSON object")
    return parse_manifest(data, str(path))
