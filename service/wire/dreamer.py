"""A DreamerV3 ComputeLossRequest → `DreamerInputs`; a `DreamerResult` → ComputeLossResponse.

Checks every tensor against the model's world model (GetModel's `world_model`): names, shapes
[*B, …], dtypes, finiteness, and each error names its request field, the expected and the
actual value. Floating tensors are cast to the model's parameter dtype and moved to its device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from service.dtypes import TORCH_DTYPES, dtype_name
from service.errors import FailedPrecondition, InvalidArgument
from service.losses.dreamer.registry import (
    ACTOR,
    DREAMER_LOSSES,
    ENUM_DEFAULTS,
    MODEL,
    VALUE,
)
from service.models.manifest import InputSpec
from service.models.model import Model
from service.models.world_model import WorldModelSpec
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.runtime.dreamer import DreamerInputs, DreamerResult, Imagined, Replay
from service.wire.codec import TORCH_TO_DTYPE, decode_tensor, encode_tensor
from service.wire.options import read_knobs
from service.wire.requests import min_version

_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def is_dreamer_request(request: pb.ComputeLossRequest) -> bool:
    """Whether the request names a DreamerV3 loss."""
    return request.WhichOneof("loss") in DREAMER_LOSSES


def _no_coefficient(message: Any, name: str) -> None:  # pragma: no cover - none here
    raise InvalidArgument(f"{name}: not a DreamerV3 knob")


def _knobs(message: Any, knobs: Mapping, where: str, model: Model) -> dict[str, Any]:
    options = read_knobs(
        message, knobs, where, model.manifest.defaults, _no_coefficient, ENUM_DEFAULTS
    )
    low = options.get("return_low_quantile", 0.05)
    high = options.get("return_high_quantile", 0.95)
    if not low < high:
        raise InvalidArgument(
            f"{where}: return_low_quantile ({low}) must be below return_high_quantile ({high})"
        )
    return options


def _float(
    message: pb.Tensor, name: str, shape: tuple[int, ...], model: Model, unit: bool = False
) -> torch.Tensor:
    tensor = decode_tensor(message, name)
    if tensor.dtype not in _FLOATS:
        raise InvalidArgument(f"{name}: expected a floating dtype, got {dtype_name(tensor.dtype)}")
    if tuple(tensor.shape) != shape:
        raise InvalidArgument(f"{name}: expected shape {list(shape)}, got {list(tensor.shape)}")
    tensor = tensor.to(device=model.device, dtype=model.parameter_dtype)
    if tensor.numel() and not bool(torch.isfinite(tensor).all()):
        raise InvalidArgument(f"{name}: holds NaN or infinite values")
    if unit and tensor.numel() and not bool(((tensor >= 0) & (tensor <= 1)).all()):
        raise InvalidArgument(f"{name}: expected probabilities in [0, 1]")
    return tensor


def _flags(message: pb.Tensor, name: str, shape: tuple[int, ...], model: Model) -> torch.Tensor:
    tensor = decode_tensor(message, name)
    if tensor.dtype is not torch.bool or tuple(tensor.shape) != shape:
        raise InvalidArgument(
            f"{name}: expected bool {list(shape)}, got {dtype_name(tensor.dtype)} "
            f"{list(tensor.shape)}"
        )
    return tensor.to(model.device)


def _latents(
    entries: Mapping[str, pb.Tensor], name: str, spec: WorldModelSpec, model: Model, tail: int
) -> tuple[tuple[int, ...], torch.Tensor, torch.Tensor]:
    """(batch shape [*B], state, belief) from a latents map whose tensors are
    [*B, (extra dims: `tail`), *latent]."""
    expected = spec.latent_shapes
    if sorted(entries) != sorted(expected):
        raise InvalidArgument(
            f"{name}: expected the latents {sorted(expected)} (GetModel's world_model.latents), "
            f"got {sorted(entries)}"
        )
    state_message = entries["state"]
    raw_shape = tuple(state_message.shape)
    if len(raw_shape) < 1 + tail or raw_shape[-1:] != expected["state"]:
        raise InvalidArgument(
            f"{name}['state']: expected shape [*B{', H+1' if tail else ''}, "
            f"{expected['state'][0]}], got {list(raw_shape)}"
        )
    lead = raw_shape[:-1]
    state = _float(state_message, f"{name}['state']", (*lead, *expected["state"]), model)
    belief = _float(entries["belief"], f"{name}['belief']", (*lead, *expected["belief"]), model)
    batch = lead[: len(lead) - tail]
    if math.prod(batch) == 0:
        raise InvalidArgument(f"{name}: the batch [*B] = {list(batch)} is empty")
    return batch, state, belief


def _action(
    message: pb.Tensor, name: str, steps: tuple[int, ...], spec: WorldModelSpec, model: Model
) -> torch.Tensor:
    """[*steps, action_size] floats; a categorical actor's int64 indices [*steps] → one-hot."""
    tensor = decode_tensor(message, name)
    categorical = model.manifest.action is not None and (
        model.manifest.action.distribution == "categorical"
    )
    if categorical and tensor.dtype in (torch.int64, torch.int32):
        if tuple(tensor.shape) != steps:
            raise InvalidArgument(
                f"{name}: expected indices {list(steps)}, got {list(tensor.shape)}"
            )
        if tensor.numel() and not bool(((tensor >= 0) & (tensor < spec.action_size)).all()):
            raise InvalidArgument(f"{name}: indices must be in [0, {spec.action_size})")
        one_hot = torch.nn.functional.one_hot(tensor.long(), spec.action_size)
        return one_hot.to(device=model.device, dtype=model.parameter_dtype)
    return _float(message, name, (*steps, spec.action_size), model)


def _replay(message: pb.DreamerV3Replay, spec: WorldModelSpec, model: Model) -> tuple:
    where = "replay"
    reward_raw = decode_tensor(message.reward, f"{where}.reward")
    if reward_raw.dim() < 2:
        raise InvalidArgument(
            f"{where}.reward: expected [*B, T], got shape {list(reward_raw.shape)}"
        )
    steps = tuple(reward_raw.shape)
    if math.prod(steps) == 0:
        raise InvalidArgument(f"{where}.reward: the replay [*B, T] = {list(steps)} is empty")
    reward = _float(message.reward, f"{where}.reward", steps, model)
    names = [o.name for o in spec.observations]
    if sorted(message.observation) != sorted(names):
        raise InvalidArgument(
            f"{where}.observation: expected {sorted(names)} (GetModel's "
            f"world_model.observations), got {sorted(message.observation)}"
        )
    observation = {
        o.name: _float(
            message.observation[o.name],
            f"{where}.observation[{o.name!r}]",
            (*steps, *o.shape),
            model,
        )
        for o in spec.observations
    }
    action = _action(message.action, f"{where}.action", steps, spec, model)
    is_first = _flags(message.is_first, f"{where}.is_first", steps, model)
    terminated = (
        _flags(message.terminated, f"{where}.terminated", steps, model)
        if message.HasField("terminated")
        else torch.zeros(steps, dtype=torch.bool, device=model.device)
    )
    rows = math.prod(steps[:-1])
    flat = lambda x: x.reshape(rows, steps[-1], *x.shape[len(steps) :])  # noqa: E731
    replay = Replay(
        observation={k: flat(v) for k, v in observation.items()},
        action=flat(action),
        reward=flat(reward),
        is_first=flat(is_first),
        terminated=flat(terminated),
    )
    return steps[:-1], replay


def _imagined(message: pb.DreamerV3Imagined, spec: WorldModelSpec, model: Model) -> tuple:
    where = "imagined"
    batch, state, belief = _latents(message.latents, f"{where}.latents", spec, model, tail=1)
    horizon = state.shape[len(batch)] - 1
    if horizon < 1:
        raise InvalidArgument(
            f"{where}.latents: expected H+1 ≥ 2 latents per row, got {horizon + 1}"
        )
    reward = _float(message.reward, f"{where}.reward", (*batch, horizon), model)
    action = _action(message.action, f"{where}.action", (*batch, horizon), spec, model)
    continuation = (
        _float(message.continuation, f"{where}.continuation", (*batch, horizon + 1), model, True)
        if message.HasField("continuation")
        else torch.ones((*batch, horizon + 1), dtype=reward.dtype, device=reward.device)
    )
    rows = math.prod(batch)
    flat = lambda x: x.reshape(rows, *x.shape[len(batch) :])  # noqa: E731
    imagined = Imagined(
        state=flat(state),
        belief=flat(belief),
        action=flat(action),
        reward=flat(reward),
        continuation=flat(continuation),
    )
    return batch, imagined


def _world_model(model: Model) -> WorldModelSpec:
    if model.world_model is None:
        raise FailedPrecondition(
            f"model {model.name!r}: DreamerV3 losses need a world model (a world_model section "
            "in its manifest with prior, posterior, encoder, decoder and reward networks); "
            "this model has none"
        )
    return model.world_model.spec


def decode_dreamer_request(request: pb.ComputeLossRequest, model: Model) -> DreamerInputs:
    """The request's DreamerV3 loss, knobs and tensors (see the module docstring)."""
    name = request.WhichOneof("loss")
    spec = _world_model(model)
    needs_start, needs_replay = DREAMER_LOSSES[name]
    message = getattr(request, name)
    model_knobs: dict[str, Any] = {}
    actor_knobs: dict[str, Any] = {}
    value_knobs: dict[str, Any] = {}
    if name == "dreamer_v3_actor":
        actor_knobs = _knobs(message, ACTOR, name, model)
    elif name == "dreamer_v3_value":
        value_knobs = _knobs(message, VALUE, name, model)
    elif name == "dreamer_v3_model":
        model_knobs = _knobs(message, MODEL, name, model)
    else:
        model_knobs = _knobs(message.model, MODEL, f"{name}.model", model)
        actor_knobs = _knobs(message.actor, ACTOR, f"{name}.actor", model)
        value_knobs = _knobs(message.value, VALUE, f"{name}.value", model)
        imagination = {k: v for k, v in actor_knobs.items() if k in _IMAGINATION_KEYS}
        value_knobs = {**value_knobs, **imagination}
    start = imagined = replay = None
    batch: tuple[int, ...] = ()
    if needs_start:
        has_start, has_imagined = bool(request.starting_latents), request.HasField("imagined")
        if has_start == has_imagined:
            raise InvalidArgument(
                f"{name}: send either starting_latents (the server imagines) or imagined (your "
                "own rollout), exactly one"
            )
        if has_start:
            batch, state, belief = _latents(
                request.starting_latents, "starting_latents", spec, model, tail=0
            )
            rows = math.prod(batch)
            start = (state.reshape(rows, -1), belief.reshape(rows, -1))
        else:
            batch, imagined = _imagined(request.imagined, spec, model)
    if needs_replay:
        if not request.HasField("replay"):
            raise InvalidArgument(f"replay: {name} needs replay sequences [*B, T]")
        batch, replay = _replay(request.replay, spec, model)
    return DreamerInputs(
        loss=name,
        model_knobs=model_knobs,
        actor_knobs=actor_knobs,
        value_knobs=value_knobs,
        batch_shape=batch,
        start=start,
        replay=replay,
        imagined=imagined,
        return_posterior=request.return_posterior,
        apply_update=request.apply_update,
        expected_version=(
            request.expected_parameter_version
            if request.HasField("expected_parameter_version")
            else None
        ),
        min_version=min_version(request),
    )


_IMAGINATION_KEYS = ("imagination_horizon", "gamma", "lmbda", "discount_loss")


def encode_dreamer_response(
    model: Model, result: DreamerResult, decode_ms: float
) -> pb.ComputeLossResponse:
    """The response for `result`."""
    response = pb.ComputeLossResponse(
        loss=result.loss,
        metrics=result.metrics,
        model_name=model.name,
        parameter_version=result.parameter_version,
        updated=result.updated,
        new_parameter_version=result.new_parameter_version,
        grad_norm=result.grad_norm,
        timing=pb.Timing(decode_ms=decode_ms, network_ms=result.network_ms),
    )
    for key, tensor in (result.posterior or {}).items():
        response.posterior_latents[key].CopyFrom(encode_tensor(tensor))
    return response


def world_model_info(model: Model) -> pb.WorldModelInfo:
    """GetModel's description of the model's world model (which it has)."""
    spec = model.world_model.spec

    def tensor_spec(item: InputSpec) -> pb.TensorSpec:
        wire = TORCH_TO_DTYPE[TORCH_DTYPES[item.dtype]]
        return pb.TensorSpec(name=item.name, shape=item.shape, dtype=wire)

    return pb.WorldModelInfo(
        latents=[tensor_spec(i) for i in model.manifest.inputs],
        observations=[tensor_spec(o) for o in spec.observations],
        num_categoricals=spec.num_categoricals,
        num_classes=spec.num_classes,
        action_size=spec.action_size,
        reward_bins=spec.reward_bins,
        networks=sorted(spec.networks),
        learning_rates={k: v.lr for k, v in spec.optimizers.items()},
    )
