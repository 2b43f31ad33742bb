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
        "action": [...], "sample_log_prob": [...], "log_prob": [...],
        "collector.mask": [...]           # or "mask": [*B, T] bool, False at padding
      },
      "n_agents": 0                       # optional; n > 0: per-agent tensors [*B, T, n, ...]
    }

A composite actor's heads are trajectory keys named like the heads (TorchRL's nested
`{"action": {"move": ..., "move_log_prob": ...}}` flattens to the head "action.move" and its
per-head log-probability "action.move_log_prob"). Loss bodies may add `composite_lp_aggregate`.

`estimator` may also be just a name ("td_lambda"); TorchRL's names work too ("TDLambda",
"TDLambdaEstimator", case, "_" and "-" ignored); a knob left out takes the model's default, and
`gamma`/`lmbda` may be a number or a per-step nested list. Per-step tensors (reward, done,
terminated, state values, log-probs) are [*B, T] nested lists; with `"torchrl_shapes": true` they
carry TorchRL's trailing feature dimension [*B, T, 1] instead (every one of them must), and the
response's tensors do too. `reward`, `done` and `terminated` are also accepted without `next.`.
A trajectory key may be given flat or nested, not both; `null` for an optional top-level key or
a knob means the default.

Types are the gRPC contract's: float tensors take numbers (never true/false), bool tensors
true/false or 0/1, integer tensors integers (1.0 is 1), each within its dtype's range; knobs are
numbers within a double's range, integers within int64's. Errors name the field as the request
wrote it (`trajectory.next.reward`, `estimator.gamma`), what it expects and what it got, in a few
words however big the value (`got an integer of 400 digits`, `got a list of 5 items`).

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

import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from service.dtypes import COMPUTE_DTYPES, TORCH_DTYPES, dtype_name
from service.errors import InvalidArgument
from service.estimators.registry import DEFAULT_ESTIMATOR, ESTIMATORS, estimator_named
from service.knobs import Knob
from service.losses.registry import DEFAULT_LOSS, LOSSES
from service.models.model import Model
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.wire.codec import DTYPE_TO_TORCH, encode_tensor

__all__ = [
    "REQUEST_KEYS",
    "advantage_request_from_json",
    "advantage_response_to_json",
    "describe_json_value",
    "estimator_name",
    "loss_request_from_json",
    "loss_response_to_json",
    "message_to_json",
    "tensor_to_json",
]

REQUEST_KEYS = (
    "model_name",
    "dtype",
    "torchrl_shapes",
    "form",
    "estimator",
    "trajectory",
    "min_parameter_version",
    "n_agents",
)
LOSS_REQUEST_KEYS = (
    *REQUEST_KEYS,
    "composite_lp_aggregate",
    "loss",
    "advantage",
    "value_target",
    "behaviour_distribution",
    "apply_update",
    "expected_parameter_version",
    # off-policy losses: the per-sample TD error back; this call's target rule
    # ({"tau": 0.005} or {"hard_interval": N})
    "return_td_error",
    "target_update",
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
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_INTEGER_RANGES = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_INT64: (INT64_MIN, INT64_MAX),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}
# What a JSON value's Python type is called in messages (plural: "got booleans").
_KINDS = {
    bool: "booleans",
    type(None): "nulls",
    str: "strings",
    dict: "objects",
    int: "integers",
    float: "numbers",
}


def describe_json_value(value: Any) -> str:
    """A JSON value in a few words for an error message, however big it is: `true`, `null`,
    `0.5`, `"abc"`, `an integer of 400 digits`, `[1, 2]`, `a list of 5 items`, `an object with
    keys ["a", "b"]`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        if -(10**20) < value < 10**20:
            return str(value)
        digits = len(str(abs(value))) if value.bit_length() < 14_000 else "over 4,000"
        return f"an integer of {digits} digits"
    if isinstance(value, float):
        return json.dumps(value)
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:40] + "…"
        return json.dumps(text, ensure_ascii=False)
    if isinstance(value, list):
        scalars = not any(isinstance(item, (list, Mapping)) for item in value[:4])
        if len(value) <= 4 and scalars:
            return "[" + ", ".join(describe_json_value(item) for item in value) + "]"
        return f"a list of {len(value)} items"
    if isinstance(value, Mapping):
        keys = [json.dumps(str(key)[:20]) for key in list(value)[:4]]
        more = ", …" if len(value) > 4 else ""
        return f"an object with keys [{', '.join(keys)}{more}]" if keys else "an empty object"
    return type(value).__name__


@contextmanager
def _reading(field: str) -> Iterator[None]:
    """Whatever else goes wrong reading `field` from JSON is INVALID_ARGUMENT naming it.

    The readers below check types and ranges first; this is the net under them, so a value no
    check foresaw is still the client's 400 and never the server's 500.
    """
    try:
        yield
    except InvalidArgument:
        raise
    except (TypeError, ValueError, OverflowError, RecursionError, RuntimeError) as error:
        detail = str(error)
        detail = detail if len(detail) <= 200 else detail[:200] + "…"
        raise InvalidArgument(f"{field}: could not be read ({detail})") from None


def _get(body: Mapping[str, Any], key: str, default: Any) -> Any:
    """`body[key]`, or `default` when absent or null."""
    value = body.get(key)
    return default if value is None else value


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
    if isinstance(name, str) and oneof == "estimator":
        name = estimator_named(name)
    return name if isinstance(name, str) and name in choices else None


def _spelling(path: tuple[str, ...]) -> str:
    """How a trajectory key was written: "next.reward" or {"next": {"reward"}}."""
    text = "{" + json.dumps(path[-1]) + "}" if len(path) > 1 else json.dumps(path[-1])
    for part in reversed(path[:-1]):
        text = "{" + f"{json.dumps(part)}: {text}" + "}"
    return text


def _flatten(entries: Mapping[str, Any]) -> dict[str, tuple[Any, tuple[str, ...]]]:
    """TensorDict-style nested dicts → dotted keys ({"next": {"reward": r}} → "next.reward"),
    each with the path it was written as; a key written twice (flat and nested) is refused."""
    flat: dict[str, tuple[Any, tuple[str, ...]]] = {}
    stack: list[tuple[tuple[str, ...], Iterator[tuple[str, Any]]]] = [((), iter(entries.items()))]
    while stack:  # depth-first in document order, without recursion
        path, items = stack[-1]
        item = next(items, None)
        if item is None:
            stack.pop()
            continue
        key, value = item
        here = (*path, str(key))
        if isinstance(value, Mapping):
            stack.append((here, iter(value.items())))
            continue
        name = ".".join(here)
        if name in flat:
            first = flat[name][1]
            short, long = sorted((first, here), key=len)
            if len(short) == 1 < len(long):
                how = f"given both flat ({_spelling(short)}) and nested ({_spelling(long)})"
            else:
                how = f"given twice, as {_spelling(first)} and as {_spelling(here)}"
            raise InvalidArgument(f"trajectory.{name}: {how}; send one")
        flat[name] = (value, here)
    return flat


def _scalar_types(value: Any) -> set[type]:
    """The types of the scalars in a nested JSON list (or of `value` itself), without recursion
    and without a Python step per number: `set(map(type, row))` runs in C."""
    if not isinstance(value, list):
        return {type(value)}
    types: set[type] = set()
    stack = [value]
    while stack:
        items = stack.pop()
        kinds = set(map(type, items))
        if list in kinds:
            kinds.discard(list)
            stack.extend(item for item in items if type(item) is list)
        types |= kinds
    return types


def _kinds(types: set[type]) -> str:
    names = sorted(_KINDS.get(kind, kind.__name__) for kind in types)
    return " and ".join(names)


def _nulls_to_nan(value: Any) -> Any:
    """A copy of a nested list with null → NaN (JSON has no NaN), without recursion."""
    if value is None:
        return math.nan
    if not isinstance(value, list):
        return value
    root = list(value)
    stack = [root]
    while stack:
        items = stack.pop()
        for index, item in enumerate(items):
            if item is None:
                items[index] = math.nan
            elif type(item) is list:
                items[index] = copy = list(item)
                stack.append(copy)
    return root


def _some_values(tensor: torch.Tensor, outside: torch.Tensor) -> str:
    values = tensor[outside].flatten()[:4].tolist()
    return f"values such as {values}"


def _tensor(value: Any, field: str, dtype: torch.dtype) -> torch.Tensor:
    """A nested JSON list (or a number) → tensor of `dtype`, with the gRPC contract's types:
    float fields take numbers (null = NaN), bool fields true/false or 0/1, integer fields
    integers (1.0 is 1), each within the dtype's range."""
    if isinstance(value, (str, Mapping)) or value is None:
        raise InvalidArgument(
            f"{field}: expected a nested list of numbers, got {describe_json_value(value)}"
        )
    types = _scalar_types(value)
    name = dtype_name(dtype)
    if dtype is torch.bool:
        wanted, allowed = "booleans (true/false or 0/1)", {bool, int, float}
    elif dtype.is_floating_point:
        wanted, allowed = "numbers", {int, float, type(None)}
    else:
        wanted, allowed = f"integers ({name})", {int, float}
    if not types <= allowed:
        raise InvalidArgument(f"{field}: expected {wanted}, got {_kinds(types - allowed)}")
    try:
        if dtype.is_floating_point:
            if type(None) in types:
                value = _nulls_to_nan(value)
            return torch.tensor(value, dtype=dtype)
        if types <= {bool}:
            return torch.tensor(value, dtype=torch.bool).to(dtype)
        # numbers: read them as int64 (or float64 when fractions may appear), then check
        exact = torch.tensor(value, dtype=torch.float64 if float in types else torch.int64)
    except (TypeError, ValueError, RuntimeError, OverflowError) as error:
        if isinstance(error, OverflowError) or "overflow" in str(error).lower():
            raise InvalidArgument(
                f"{field}: expected {wanted} within {name}'s range, got a value out of range"
            ) from None
        raise InvalidArgument(
            f"{field}: not a rectangular nested list of numbers ({error})"
        ) from None
    if dtype is torch.bool:
        outside = (exact != 0) & (exact != 1)
    else:
        info = torch.iinfo(dtype)
        outside = (exact < info.min) | (exact > info.max)
        if exact.is_floating_point():
            outside |= exact != exact.round()  # NaN and ±inf too
    if bool(outside.any()):
        raise InvalidArgument(f"{field}: expected {wanted}, got {_some_values(exact, outside)}")
    return exact.to(dtype)


def _squeeze_feature(tensor: torch.Tensor, field: str) -> torch.Tensor:
    if tensor.dim() < 2 or tensor.shape[-1] != 1:
        raise InvalidArgument(
            f"{field}: expected shape [*B, T, 1] (torchrl_shapes is true), got {list(tensor.shape)}"
        )
    return tensor.squeeze(-1)


def _number(value: int | float, field: str, expected: str) -> float:
    """A JSON number as a double; an integer no double holds is refused naming `field`."""
    try:
        return float(value)
    except OverflowError:
        raise InvalidArgument(
            f"{field}: expected {expected}, got {describe_json_value(value)}"
        ) from None


def _coefficient(value: Any, field: str, dtype: torch.dtype, torchrl: bool) -> pb.Coefficient:
    expected = "a number in [0, 1]"
    if isinstance(value, bool) or not isinstance(value, (int, float, list)):
        raise InvalidArgument(
            f"{field}: expected {expected} or a per-step list, got {describe_json_value(value)}"
        )
    if isinstance(value, (int, float)):
        return pb.Coefficient(scalar=_number(value, field, expected))
    tensor = _tensor(value, field, dtype)
    if torchrl:
        tensor = _squeeze_feature(tensor, field)
    return pb.Coefficient(per_step=encode_tensor(tensor))


def _expected_number(knob: Knob | None) -> str:
    """A knob's range in words, for a number ("a finite number > 0"; "a number" when free)."""
    return knob.expected.replace("value", "number") if knob is not None else "a number"


def _integer(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgument(
            f"{field}: expected an integer from {low} to {high}, got {describe_json_value(value)}"
        )
    return value


def _set_fields(
    message: Message,
    values: Mapping[str, Any],
    where: str,
    dtype: torch.dtype,
    torchrl: bool,
    knobs: Mapping[str, Knob],
) -> None:
    """Set a protobuf message's fields from a JSON object, naming `where.key` in every error.

    Coefficients take a number or a per-step list; other sub-messages an object; enums their name
    or its lowercase suffix ("smooth_l1" for CRITIC_LOSS_SMOOTH_L1); null leaves a field unset.
    `knobs` (the registry entry's) say each number's range for messages.
    """
    fields = message.DESCRIPTOR.fields_by_name
    for key, value in values.items():
        field = f"{where}.{key}"
        if key not in fields:
            raise InvalidArgument(f"{field}: unknown knob; expected some of {list(fields)}")
        if value is None:
            continue  # null = the default, like leaving it out
        descriptor = fields[key]
        shown = describe_json_value(value)
        if descriptor.message_type is pb.Coefficient.DESCRIPTOR:
            getattr(message, key).CopyFrom(_coefficient(value, field, dtype, torchrl))
        elif descriptor.message_type is not None:
            if not isinstance(value, Mapping):
                raise InvalidArgument(f"{field}: expected an object, got {shown}")
            getattr(message, key).SetInParent()
            _set_fields(getattr(message, key), value, field, dtype, torchrl, knobs)
        elif descriptor.enum_type is not None:
            names = [item.name for item in descriptor.enum_type.values]
            prefix = names[0].removesuffix("UNSPECIFIED")
            wanted = value.upper() if isinstance(value, str) else None
            match = next((n for n in names if n in (wanted, f"{prefix}{wanted}")), None)
            if match is None:
                raise InvalidArgument(f"{field}: expected one of {names}, got {shown}")
            setattr(message, key, descriptor.enum_type.values_by_name[match].number)
        elif descriptor.type == descriptor.TYPE_BOOL:
            if not isinstance(value, bool):
                raise InvalidArgument(f"{field}: expected true or false, got {shown}")
            setattr(message, key, value)
        elif descriptor.type in (descriptor.TYPE_DOUBLE, descriptor.TYPE_FLOAT):
            expected = _expected_number(knobs.get(key))
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidArgument(f"{field}: expected {expected}, got {shown}")
            setattr(message, key, _number(value, field, expected))
        elif descriptor.type == descriptor.TYPE_STRING:
            if not isinstance(value, str):
                raise InvalidArgument(f"{field}: expected a string, got {shown}")
            setattr(message, key, value)
        else:  # integers
            low, high = _INTEGER_RANGES[descriptor.cpp_type]
            setattr(message, key, _integer(value, field, low, high))


def _choice(
    request: Message,
    oneof: str,
    value: Any,
    choices: Mapping[str, Any],
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
            f'{oneof}: expected a name or an object with "name", got {describe_json_value(value)}'
        )
    knobs = dict(value)
    name = knobs.pop("name", None)
    if isinstance(name, str) and oneof == "estimator":  # TorchRL's names too ("TDLambda")
        name = estimator_named(name) or name
    if not isinstance(name, str) or name not in choices:
        also = " (or TorchRL's names: GAE, TDLambda, TDLambdaEstimator, …)"
        raise InvalidArgument(
            f"{oneof}.name: expected one of {list(choices)}"
            f"{also if oneof == 'estimator' else ''}, got {describe_json_value(name)}"
        )
    message = getattr(request, name)
    message.SetInParent()
    try:
        _set_fields(message, knobs, oneof, dtype, torchrl, choices[name].knobs)
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
    with _reading("loss"):
        _choice(request, "loss", body.get("loss"), LOSSES, dtype, torchrl)
    for key in ("advantage", "value_target"):
        if body.get(key) is not None:
            with _reading(key):
                tensor = _tensor(body[key], key, dtype)
                if torchrl:
                    tensor = _squeeze_feature(tensor, key)
                getattr(request, key).CopyFrom(encode_tensor(tensor))
    behaviour = _get(body, "behaviour_distribution", {})
    if not isinstance(behaviour, Mapping):
        raise InvalidArgument(
            "behaviour_distribution: expected an object of parameters, got "
            f"{describe_json_value(behaviour)}"
        )
    for key, value in behaviour.items():
        field = f"behaviour_distribution[{key!r}]"
        with _reading(field):
            request.behaviour_distribution[key].CopyFrom(
                encode_tensor(_tensor(value, field, dtype))
            )
    apply_update = _get(body, "apply_update", False)
    if not isinstance(apply_update, bool):
        raise InvalidArgument(
            f"apply_update: expected true or false, got {describe_json_value(apply_update)}"
        )
    request.apply_update = apply_update
    aggregate = body.get("composite_lp_aggregate")
    if aggregate is not None:
        if not isinstance(aggregate, bool):
            raise InvalidArgument(
                "composite_lp_aggregate: expected true, false or null, got "
                f"{describe_json_value(aggregate)}"
            )
        request.composite_lp_aggregate = aggregate
    expected = body.get("expected_parameter_version")
    if expected is not None:
        field = "expected_parameter_version"
        request.expected_parameter_version = _integer(expected, field, INT64_MIN, INT64_MAX)
    _offpolicy_fields(request, body, dtype, torchrl)
    return request


def _offpolicy_fields(
    request: pb.ComputeLossRequest, body: Mapping[str, Any], dtype: torch.dtype, torchrl: bool
) -> None:
    """`return_td_error` (true/false) and `target_update` ({"tau": τ} or {"hard_interval": N})."""
    td_error = _get(body, "return_td_error", False)
    if not isinstance(td_error, bool):
        raise InvalidArgument(
            f"return_td_error: expected true or false, got {describe_json_value(td_error)}"
        )
    request.return_td_error = td_error
    rule = body.get("target_update")
    if rule is not None:
        if not isinstance(rule, Mapping):
            raise InvalidArgument(
                'target_update: expected {"tau": ...} or {"hard_interval": ...}, got '
                f"{describe_json_value(rule)}"
            )
        request.target_update.SetInParent()
        _set_fields(request.target_update, rule, "target_update", dtype, torchrl, {})


def _fill(
    request: Any, body: Any, model: Model, allowed: tuple[str, ...]
) -> tuple[torch.dtype, bool]:
    """Fill model_name, trajectory and estimator of a compute request; (dtype, torchrl_shapes)."""
    if not isinstance(body, Mapping):
        raise InvalidArgument(f"body: expected a JSON object, got {describe_json_value(body)}")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        shown = [key if len(key) <= 40 else key[:40] + "…" for key in unknown[:5]]
        more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise InvalidArgument(f"body: unknown keys {shown}{more}; expected some of {list(allowed)}")
    dtype_text = _get(body, "dtype", "float32")
    if not isinstance(dtype_text, str) or dtype_text not in COMPUTE_DTYPES:
        raise InvalidArgument(
            f"dtype: expected one of {list(COMPUTE_DTYPES)}, got {describe_json_value(dtype_text)}"
        )
    dtype = COMPUTE_DTYPES[dtype_text]
    torchrl = _get(body, "torchrl_shapes", False)
    if not isinstance(torchrl, bool):
        raise InvalidArgument(
            f"torchrl_shapes: expected true or false, got {describe_json_value(torchrl)}"
        )
    model_name = _get(body, "model_name", "")
    if not isinstance(model_name, str):
        raise InvalidArgument(
            f"model_name: expected a string, got {describe_json_value(model_name)}"
        )
    request.model_name = model_name
    minimum = body.get("min_parameter_version")
    if minimum is not None:
        field = "min_parameter_version"
        request.min_parameter_version = _integer(minimum, field, INT64_MIN, INT64_MAX)
    trajectory = request.trajectory
    form = _get(body, "form", "full")
    if not isinstance(form, str) or form not in FORMS:
        raise InvalidArgument(
            f"form: expected one of {list(FORMS)}, got {describe_json_value(form)}"
        )
    trajectory.form = FORMS[form]
    n_agents = body.get("n_agents")
    if n_agents is not None:
        trajectory.n_agents = _integer(n_agents, "n_agents", 0, 2**32 - 1)
    with _reading("estimator"):
        _choice(request, "estimator", body.get("estimator"), ESTIMATORS, dtype, torchrl)

    entries = body.get("trajectory")
    if not isinstance(entries, Mapping):
        raise InvalidArgument(
            "trajectory: required, an object of TorchRL keys "
            f"(next.reward, next.done, observation, ...), got {describe_json_value(entries)}"
        )
    inputs = {spec.name: spec for spec in model.manifest.inputs}
    qvalue = model.manifest.qvalue_network
    action_dtype = (
        torch.int64
        if (
            model.manifest.action is not None
            and model.manifest.action.distribution == "categorical"
        )
        or (qvalue is not None and qvalue.kind == "action_value")  # DQN: action indices
        else torch.float32
    )
    seen: dict[str, str] = {}
    for key, (value, _) in _flatten(entries).items():
        field = f"trajectory.{key}"
        with _reading(field):
            _trajectory_entry(
                trajectory, key, value, field, model, inputs, dtype, torchrl, action_dtype, seen
            )
    return dtype, torchrl


def _trajectory_entry(
    trajectory: pb.Trajectory,
    key: str,
    value: Any,
    field: str,
    model: Model,
    inputs: Mapping[str, Any],
    dtype: torch.dtype,
    torchrl: bool,
    action_dtype: torch.dtype,
    seen: dict[str, str],
) -> None:
    """Set the Trajectory field one flattened JSON key (`next.reward`, `observation`) names."""
    if key in PER_STEP_KEYS:
        name, kind = PER_STEP_KEYS[key]
        if name in seen:
            raise InvalidArgument(
                f"{field}: given together with trajectory.{seen[name]}, the same field "
                f"(trajectory.{name}); send one"
            )
        seen[name] = key
        tensor = _tensor(value, field, torch.bool if kind == "bool" else dtype)
        if torchrl:
            tensor = _squeeze_feature(tensor, field)
        getattr(trajectory, name).CopyFrom(encode_tensor(tensor))
    elif key == "action":
        trajectory.action.CopyFrom(encode_tensor(_tensor(value, field, action_dtype)))
    elif key in ("mask", "collector.mask"):
        tensor = _tensor(value, field, torch.bool)
        if torchrl and tensor.dim() > 1 and tensor.shape[-1] == 1:
            tensor = _squeeze_feature(tensor, field)
        trajectory.mask.CopyFrom(encode_tensor(tensor))
    elif key in _heads(model):
        head_dtype = torch.int64 if _heads(model)[key] == "categorical" else dtype
        trajectory.action_heads[key].CopyFrom(encode_tensor(_tensor(value, field, head_dtype)))
    elif key.endswith("_log_prob") and key.removesuffix("_log_prob") in _heads(model):
        tensor = _tensor(value, field, dtype)
        if torchrl:
            tensor = _squeeze_feature(tensor, field)
        head = key.removesuffix("_log_prob")
        trajectory.sample_log_prob_heads[head].CopyFrom(encode_tensor(tensor))
    elif key in inputs:
        wanted = TORCH_DTYPES[inputs[key].dtype]
        trajectory.observation[key].CopyFrom(encode_tensor(_tensor(value, field, wanted)))
    elif key.startswith("next.") and key.removeprefix("next.") in inputs:
        base = key.removeprefix("next.")
        wanted = TORCH_DTYPES[inputs[base].dtype]
        trajectory.next_observation[base].CopyFrom(encode_tensor(_tensor(value, field, wanted)))
    else:
        heads = _heads(model)
        expected = sorted(
            {*PER_STEP_KEYS, "action", "mask", "collector.mask", *inputs,
             *(f"next.{k}" for k in inputs), *heads, *(f"{k}_log_prob" for k in heads)}
        )  # fmt: skip
        raise InvalidArgument(
            f"{field}: unknown key (model {model.name!r}); expected some of {expected}"
        )


def _heads(model: Model) -> dict[str, str]:
    """A composite actor's head name → distribution (its JSON keys: the head's actions, and
    `<head>_log_prob` for its behaviour log-probability, TorchRL's non-aggregate layout)."""
    action = model.manifest.action
    if action is None or action.distribution != "composite":
        return {}
    return {head.name: head.distribution for head in action.heads}


def loss_response_to_json(response: pb.ComputeLossResponse) -> dict[str, Any]:
    """ComputeLossResponse → JSON (the numbers as they are; timing in milliseconds; an
    off-policy td_error as a nested list, null when not asked for)."""
    td_error = tensor_to_json(response.td_error) if response.HasField("td_error") else None
    response = type(response).FromString(response.SerializeToString())
    response.ClearField("td_error")
    return {**message_to_json(response), "td_error": td_error}


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
    """A ListModels / GetModel response → JSON: proto field names, enums as requests spell them
    (`"float32"`, `"categorical"`; see `_enum_json`), int64 as numbers.

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
        return _enum_json(field, value)
    return value


def _enum_json(field: FieldDescriptor, number: int) -> str | int:
    """An enum value as REST requests spell it: lower case, without the enum's prefix.

    DTYPE_FLOAT32 → "float32" (the dtype vocabulary's name, as in a request's "dtype"; gRPC keeps
    the enum), DISTRIBUTION_CATEGORICAL → "categorical" (the manifest's), CRITIC_LOSS_SMOOTH_L1 →
    "smooth_l1" (as a loss knob takes it). A number the enum does not name stays a number.
    """
    value = field.enum_type.values_by_number.get(number)
    if value is None:
        return number
    prefix = field.enum_type.values[0].name.removesuffix("UNSPECIFIED")
    return value.name.removeprefix(prefix).lower()
