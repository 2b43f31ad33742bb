"""JSON ↔ protobuf for the REST surface: the only module that knows the JSON shapes.

A REST request is turned into the very `ComputeAdvantageRequest` a gRPC client would send, and
handed to the shared handler, so numbers and validation are the gRPC ones. Errors found here (a
ragged list, a string where a number belongs, an unknown key) are `InvalidArgument`s naming the
field, in the gRPC messages' style.

Request (POST /v1/advantage)::

    {
      "model_name": "demo",               # optional; "" / absent = the default model
      "dtype": "float32",                 # optional; or "float64": reward, values, log-probs
      "torchrl_shapes": false,            # optional; true = per-step tensors are [*B, T, 1]
      "form": "full",                     # optional; or "compact" (see TrajectoryForm)
      "estimator": {"name": "gae", "gamma": 0.99, "lmbda": 0.95, "average_gae": false},
      "trajectory": {                     # TorchRL keys, flat ("next.reward") or nested
        "observation": [[...]],           # every model input key K: "K" and "next.K"
        "next.observation": [[...]],
        "next.reward": [...], "next.done": [...], "next.terminated": [...],
        "state_value": [...], "next.state_value": [...],
        "action": [...], "sample_log_prob": [...], "log_prob": [...]
      }
    }

`estimator` may also be just a name ("td_lambda"); a knob left out takes the model's default, and
`gamma`/`lmbda` may be a number or a per-step nested list. Per-step tensors (reward, done,
terminated, state values, log-probs) are [*B, T] nested lists; with `"torchrl_shapes": true` they
carry TorchRL's trailing feature dimension [*B, T, 1] instead (every one of them must), and the
response's tensors do too. `reward`, `done` and `terminated` are also accepted without `next.`.

Response::

    {"model_name": "demo", "parameter_version": 0, "dtype": "float32", "shape": [*B, T],
     "advantage": [...], "value_target": [...],
     "state_value": [...], "next.state_value": [...],   # only when the server computed them
     "timing": {"json_decode_ms": ..., "decode_ms": ..., "network_ms": ...,
                "estimator_ms": ..., "encode_ms": ...}}

Non-finite numbers travel as `null` in responses (JSON has no NaN); requests may use `null` for NaN
in float tensors (e.g. next.state_value at terminated steps).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from service.dtypes import COMPUTE_DTYPES, TORCH_DTYPES
from service.errors import InvalidArgument
from service.estimators.registry import DEFAULT_ESTIMATOR, ESTIMATORS
from service.losses.registry import DEFAULT_LOSS, LOSSES
from service.models.model import Model
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.wire.codec import DTYPE_TO_TORCH, encode_tensor

__all__ = [
    "REQUEST_KEYS",
    "advantage_request_from_json",
    "advantage_response_to_json",
    "estimator_name",
    "loss_request_from_json",
    "loss_response_to_json",
    "message_to_json",
    "tensor_to_json",
]

REQUEST_KEYS = ("model_name", "dtype", "torchrl_shapes", "form", "estimator", "trajectory")
LOSS_REQUEST_KEYS = (
    *REQUEST_KEYS,
    "loss",
    "advantage",
    "value_target",
    "behaviour_distribution",
    "apply_update",
    "expected_parameter_version",
)
FORMS = {"full": pb.TRAJECTORY_FORM_FULL, "compact": pb.TRAJECTORY_FORM_COMPACT}
# JSON trajectory key → (Trajectory field, kind). Kinds: "float" per-step in the request dtype,
# "bool" per-step.
PER_STEP_KEYS: dict[str, tuple[str, str]] = {
    "next.reward": ("reward", "float"),
    "next.done": ("done", "bool"),
    "next.terminated": ("terminated", "bool"),
    "reward": ("reward", "float"),
    "done": ("done", "bool"),
    "terminated": ("terminated", "bool"),
    "state_value": ("state_value", "float"),
    "next.state_value": ("next_state_value", "float"),
    "sample_log_prob": ("sample_log_prob", "float"),
    "log_prob": ("log_prob", "float"),
}


def estimator_name(body: Any, oneof: str = "estimator") -> str | None:
    """The estimator (or, with oneof="loss", the loss) a JSON body asks for, if it can be read
    (for metrics labels); absent = the contract's default (gae, ppo_clip)."""
    if not isinstance(body, Mapping):
        return None
    choices, default = (
        (ESTIMATORS, DEFAULT_ESTIMATOR) if oneof == "estimator" else (LOSSES, DEFAULT_LOSS)
    )
    value = body.get(oneof)
    if value is None:
        return default
    name = value.get("name") if isinstance(value, Mapping) else value
    return name if name in choices else None


def _flatten(entries: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """TensorDict-style nested dicts → dotted keys ({"next": {"reward": r}} → "next.reward")."""
    flat: dict[str, Any] = {}
    for key, value in entries.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _tensor(value: Any, field: str, dtype: torch.dtype) -> torch.Tensor:
    """A nested JSON list (or a number) → tensor of `dtype`; bool fields take true/false or 0/1."""
    if isinstance(value, (str, Mapping)):
        raise InvalidArgument(
            f"{field}: expected a nested list of numbers, got {type(value).__name__}"
        )
    try:
        if dtype is torch.bool:
            tensor = torch.tensor(value)
            if tensor.dtype is not torch.bool:
                if tensor.is_floating_point() or not bool(((tensor == 0) | (tensor == 1)).all()):
                    raise InvalidArgument(
                        f"{field}: expected booleans (true/false or 0/1), "
                        f"got {_some_values(tensor)}"
                    )
                tensor = tensor.to(torch.bool)
            return tensor
        if dtype.is_floating_point:
            value = _nulls_to_nan(value)
        return torch.tensor(value, dtype=dtype)
    except InvalidArgument:
        raise
    except (TypeError, ValueError, RuntimeError, OverflowError) as error:
        raise InvalidArgument(
            f"{field}: not a rectangular nested list of numbers ({error})"
        ) from None


def _some_values(tensor: torch.Tensor) -> str:
    values = tensor.flatten()[:4].tolist()
    return f"values such as {values}"


def _nulls_to_nan(value: Any) -> Any:
    if value is None:
        return math.nan
    if isinstance(value, list):
        return [_nulls_to_nan(item) for item in value]
    return value


def _squeeze_feature(tensor: torch.Tensor, field: str) -> torch.Tensor:
    if tensor.dim() < 2 or tensor.shape[-1] != 1:
        raise InvalidArgument(
            f"{field}: expected shape [*B, T, 1] (torchrl_shapes is true), got {list(tensor.shape)}"
        )
    return tensor.squeeze(-1)


def _coefficient(value: Any, field: str, dtype: torch.dtype, torchrl: bool) -> pb.Coefficient:
    if isinstance(value, bool) or value is None:
        raise InvalidArgument(
            f"{field}: expected a number in [0, 1] or a per-step list, got {value!r}"
        )
    if isinstance(value, (int, float)):
        return pb.Coefficient(scalar=float(value))
    tensor = _tensor(value, field, dtype)
    if torchrl:
        tensor = _squeeze_feature(tensor, field)
    return pb.Coefficient(per_step=encode_tensor(tensor))


def _set_fields(
    message: Message, values: Mapping[str, Any], where: str, dtype: torch.dtype, torchrl: bool
) -> None:
    """Set a protobuf message's fields from a JSON object, naming `where.key` in every error.

    Coefficients take a number or a per-step list; other sub-messages an object; enums their name
    or its lowercase suffix ("smooth_l1" for CRITIC_LOSS_SMOOTH_L1); null leaves a field unset.
    """
    fields = message.DESCRIPTOR.fields_by_name
    for key, value in values.items():
        field = f"{where}.{key}"
        if key not in fields:
            raise InvalidArgument(f"{field}: unknown knob; expected some of {list(fields)}")
        if value is None:
            continue  # null = the default, like leaving it out
        descriptor = fields[key]
        if descriptor.message_type is pb.Coefficient.DESCRIPTOR:
            getattr(message, key).CopyFrom(_coefficient(value, field, dtype, torchrl))
        elif descriptor.message_type is not None:
            if not isinstance(value, Mapping):
                raise InvalidArgument(f"{field}: expected an object, got {value!r}")
            getattr(message, key).SetInParent()
            _set_fields(getattr(message, key), value, field, dtype, torchrl)
        elif descriptor.enum_type is not None:
            names = [item.name for item in descriptor.enum_type.values]
            prefix = names[0].removesuffix("UNSPECIFIED")
            wanted = str(value).upper()
            match = next((n for n in names if n in (wanted, f"{prefix}{wanted}")), None)
            if match is None:
                raise InvalidArgument(f"{field}: expected one of {names}, got {value!r}")
            setattr(message, key, descriptor.enum_type.values_by_name[match].number)
        elif descriptor.type == descriptor.TYPE_BOOL:
            if not isinstance(value, bool):
                raise InvalidArgument(f"{field}: expected true or false, got {value!r}")
            setattr(message, key, value)
        elif descriptor.type in (descriptor.TYPE_DOUBLE, descriptor.TYPE_FLOAT):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidArgument(f"{field}: expected a number, got {value!r}")
            setattr(message, key, float(value))
        elif descriptor.type == descriptor.TYPE_STRING:
            if not isinstance(value, str):
                raise InvalidArgument(f"{field}: expected a string, got {value!r}")
            setattr(message, key, value)
        else:  # integers
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidArgument(f"{field}: expected an integer, got {value!r}")
            setattr(message, key, value)


def _choice(
    request: Message,
    oneof: str,
    value: Any,
    choices: tuple[str, ...],
    dtype: torch.dtype,
    torchrl: bool,
) -> None:
    """Fill a oneof (`estimator` or `loss`) from a name or an object {"name": ..., knobs}."""
    if value is None:
        return
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise InvalidArgument(
            f'{oneof}: expected a name or an object with "name", got {type(value).__name__}'
        )
    knobs = dict(value)
    name = knobs.pop("name", None)
    if name not in choices:
        raise InvalidArgument(f"{oneof}.name: expected one of {list(choices)}, got {name!r}")
    message = getattr(request, name)
    message.SetInParent()
    try:
        _set_fields(message, knobs, oneof, dtype, torchrl)
    except InvalidArgument as error:
        if "unknown knob" not in error.message:
            raise
        # say which estimator/loss lacks it: "estimator.lmbda: td0 has no knob 'lmbda'; ..."
        field, _, rest = error.message.partition(": unknown knob; ")
        knob = field.rsplit(".", 1)[-1]
        raise InvalidArgument(f"{field}: {name} has no knob {knob!r}; {rest}") from None


def advantage_request_from_json(body: Any, model: Model) -> pb.ComputeAdvantageRequest:
    """Build the ComputeAdvantageRequest a JSON body describes (see the module docstring).

    `model` is the one `body["model_name"]` names (resolved by the caller, so an unknown model
    is NOT_FOUND before anything else, as over gRPC); its input keys tell observations apart.
    """
    request = pb.ComputeAdvantageRequest()
    _fill(request, body, model, REQUEST_KEYS)
    return request


def loss_request_from_json(body: Any, model: Model) -> pb.ComputeLossRequest:
    """Build the ComputeLossRequest a JSON body describes: the advantage body plus `loss` (a
    name or {"name", knobs}; PolicyLossOptions under "options"), optional per-step `advantage`
    and `value_target`, `behaviour_distribution` ({param: nested list}), `apply_update` and
    `expected_parameter_version`."""
    request = pb.ComputeLossRequest()
    dtype, torchrl = _fill(request, body, model, LOSS_REQUEST_KEYS)
    _choice(request, "loss", body.get("loss"), tuple(LOSSES), dtype, torchrl)
    for key in ("advantage", "value_target"):
        if body.get(key) is not None:
            tensor = _tensor(body[key], key, dtype)
            if torchrl:
                tensor = _squeeze_feature(tensor, key)
            getattr(request, key).CopyFrom(encode_tensor(tensor))
    behaviour = body.get("behaviour_distribution") or {}
    if not isinstance(behaviour, Mapping):
        raise InvalidArgument(
            f"behaviour_distribution: expected an object of parameters, got {behaviour!r}"
        )
    for key, value in behaviour.items():
        tensor = _tensor(value, f"behaviour_distribution[{key!r}]", dtype)
        request.behaviour_distribution[key].CopyFrom(encode_tensor(tensor))
    apply_update = body.get("apply_update", False)
    if not isinstance(apply_update, bool):
        raise InvalidArgument(f"apply_update: expected true or false, got {apply_update!r}")
    request.apply_update = apply_update
    expected = body.get("expected_parameter_version")
    if expected is not None:
        if isinstance(expected, bool) or not isinstance(expected, int):
            raise InvalidArgument(
                f"expected_parameter_version: expected an integer, got {expected!r}"
            )
        request.expected_parameter_version = expected
    return request


def _fill(
    request: Any, body: Any, model: Model, allowed: tuple[str, ...]
) -> tuple[torch.dtype, bool]:
    """Fill model_name, trajectory and estimator of a compute request; (dtype, torchrl_shapes)."""
    if not isinstance(body, Mapping):
        raise InvalidArgument(f"body: expected a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InvalidArgument(f"body: unknown keys {unknown}; expected some of {list(allowed)}")
    dtype_name = body.get("dtype", "float32")
    if dtype_name not in COMPUTE_DTYPES:
        raise InvalidArgument(f"dtype: expected one of {list(COMPUTE_DTYPES)}, got {dtype_name!r}")
    dtype = COMPUTE_DTYPES[dtype_name]
    torchrl = body.get("torchrl_shapes", False)
    if not isinstance(torchrl, bool):
        raise InvalidArgument(f"torchrl_shapes: expected true or false, got {torchrl!r}")
    model_name = body.get("model_name") or ""
    if not isinstance(model_name, str):
        raise InvalidArgument(f"model_name: expected a string, got {model_name!r}")
    request.model_name = model_name
    trajectory = request.trajectory
    form = body.get("form", "full")
    if form not in FORMS:
        raise InvalidArgument(f"form: expected one of {list(FORMS)}, got {form!r}")
    trajectory.form = FORMS[form]
    _choice(request, "estimator", body.get("estimator"), tuple(ESTIMATORS), dtype, torchrl)

    entries = body.get("trajectory")
    if not isinstance(entries, Mapping):
        raise InvalidArgument(
            "trajectory: required, an object of TorchRL keys "
            "(next.reward, next.done, observation, ...)"
        )
    inputs = {spec.name: spec for spec in model.manifest.inputs}
    action_dtype = (
        torch.int64
        if model.manifest.action is not None and model.manifest.action.distribution == "categorical"
        else torch.float32
    )
    seen: dict[str, str] = {}
    for key, value in _flatten(entries).items():
        field = f"trajectory[{key!r}]"
        if key in PER_STEP_KEYS:
            name, kind = PER_STEP_KEYS[key]
            if name in seen:
                raise InvalidArgument(f"{field}: {name} given twice (as {seen[name]!r} too)")
            seen[name] = key
            tensor = _tensor(value, field, torch.bool if kind == "bool" else dtype)
            if torchrl:
                tensor = _squeeze_feature(tensor, field)
            getattr(trajectory, name).CopyFrom(encode_tensor(tensor))
        elif key == "action":
            trajectory.action.CopyFrom(encode_tensor(_tensor(value, field, action_dtype)))
        elif key in inputs:
            wanted = TORCH_DTYPES[inputs[key].dtype]
            trajectory.observation[key].CopyFrom(encode_tensor(_tensor(value, field, wanted)))
        elif key.startswith("next.") and key.removeprefix("next.") in inputs:
            base = key.removeprefix("next.")
            wanted = TORCH_DTYPES[inputs[base].dtype]
            trajectory.next_observation[base].CopyFrom(encode_tensor(_tensor(value, field, wanted)))
        else:
            expected = sorted({*PER_STEP_KEYS, "action", *inputs, *(f"next.{k}" for k in inputs)})
            raise InvalidArgument(
                f"{field}: unknown key (model {model.name!r}); expected some of {expected}"
            )
    return dtype, torchrl


def loss_response_to_json(response: pb.ComputeLossResponse) -> dict[str, Any]:
    """ComputeLossResponse → JSON (the numbers as they are; timing in milliseconds)."""
    return message_to_json(response)


def tensor_to_json(message: pb.Tensor, torchrl: bool = False) -> Any:
    """A wire tensor → nested lists (non-finite floats as null)."""
    dtype = DTYPE_TO_TORCH[message.dtype]
    shape = list(message.shape)
    if math.prod(shape) == 0:
        return torch.empty(shape).tolist()
    tensor = torch.frombuffer(bytearray(message.raw_data), dtype=dtype).view(shape)
    if torchrl:
        tensor = tensor.unsqueeze(-1)
    values = tensor.tolist()
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        values = _non_finite_to_null(values)
    return values


def _non_finite_to_null(value: Any) -> Any:
    if isinstance(value, list):
        return [_non_finite_to_null(item) for item in value]
    return value if math.isfinite(value) else None


def advantage_response_to_json(
    response: pb.ComputeAdvantageResponse, torchrl: bool = False, json_decode_ms: float = 0.0
) -> dict[str, Any]:
    """ComputeAdvantageResponse → the JSON response (see the module docstring)."""
    result: dict[str, Any] = {
        "model_name": response.model_name,
        "parameter_version": response.parameter_version,
        "dtype": str(DTYPE_TO_TORCH[response.advantage.dtype]).removeprefix("torch."),
        "shape": list(response.advantage.shape),
        "advantage": tensor_to_json(response.advantage, torchrl),
        "value_target": tensor_to_json(response.value_target, torchrl),
    }
    if response.HasField("state_value"):
        result["state_value"] = tensor_to_json(response.state_value, torchrl)
        result["next.state_value"] = tensor_to_json(response.next_state_value, torchrl)
    timing = response.timing
    result["timing"] = {
        "json_decode_ms": json_decode_ms,
        "decode_ms": timing.decode_ms,
        "network_ms": timing.network_ms,
        "estimator_ms": timing.estimator_ms,
        "encode_ms": timing.encode_ms,
    }
    return result


def message_to_json(message: Message) -> dict[str, Any]:
    """A ListModels / GetModel response → JSON: proto field names, enums by name, int64 as numbers.

    (Unlike protobuf's canonical JSON mapping, which writes int64 as strings; shapes and versions
    are small.) An unset sub-message with presence (ModelInfo.action without an actor) is null.
    """
    result: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            result[field.name] = {
                key: _field_value(value_field, item) for key, item in sorted(value.items())
            }
        elif field.is_repeated:
            result[field.name] = [_field_value(field, item) for item in value]
        elif field.has_presence and not message.HasField(field.name):
            result[field.name] = None
        else:
            result[field.name] = _field_value(field, value)
    return result


def _field_value(field: FieldDescriptor, value: Any) -> Any:
    if field.type == field.TYPE_MESSAGE:
        return message_to_json(value)
    if field.type == field.TYPE_ENUM:
        return field.enum_type.values_by_number[value].name
    return value
