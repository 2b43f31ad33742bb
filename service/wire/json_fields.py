"""The REST body's names for the request fields that the shared handler's errors name.

A REST body becomes the gRPC request (`service.wire.json`) and goes through the same handler,
whose errors name protobuf fields: `trajectory.done`, `trajectory.next_state_value`,
`trajectory.observation['pixels']`, `gae.gamma.scalar`, `a2c.options.entropy_coeff`. The REST
user wrote `trajectory.next.done` (or `trajectory.done`, or `{"next": {"done": ...}}`),
`trajectory.next.state_value`, `trajectory.pixels`, `estimator.gamma`,
`loss.options.entropy_coeff`. `rest_field_names` maps the former to the latter for one body and
`with_rest_names` rewrites an error's message with that map, so REST errors name the fields as
the body wrote them (or, for a field the body left out, as REST spells it: `next.done`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from google.protobuf.descriptor import Descriptor

from service.errors import ServiceError
from service.models.model import Model
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.wire.json import PER_STEP_KEYS

__all__ = ["rest_field_names", "with_rest_names"]

# The oneofs whose member messages hold knobs, and the JSON key that holds them in a body.
_CHOICES = (
    (pb.ComputeAdvantageRequest.DESCRIPTOR.oneofs_by_name["estimator"], "estimator"),
    (pb.ComputeLossRequest.DESCRIPTOR.oneofs_by_name["loss"], "loss"),
)


def _knob_paths(descriptor: Descriptor, grpc: str, rest: str, names: dict[str, str]) -> None:
    """`<estimator>.<field>[.<sub>…]` → `<oneof>.<field>[.<sub>…]`; a Coefficient's `.scalar` /
    `.per_step` is the JSON knob itself (a number or a per-step list)."""
    for field in descriptor.fields:
        grpc_path, rest_path = f"{grpc}.{field.name}", f"{rest}.{field.name}"
        names[grpc_path] = rest_path
        if field.message_type is pb.Coefficient.DESCRIPTOR:
            for part in field.message_type.fields:
                names[f"{grpc_path}.{part.name}"] = rest_path
        elif field.message_type is not None:
            _knob_paths(field.message_type, grpc_path, rest_path, names)


def _knob_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for oneof, key in _CHOICES:
        for member in oneof.fields:
            _knob_paths(member.message_type, member.name, key, names)
    return names


KNOB_NAMES = _knob_names()
# A loss body's per-step fields outside the trajectory.
_LOSS_PER_STEP = ("advantage", "value_target")


def _dotted_keys(entries: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The trajectory's keys as `service.wire.json` reads them: nested objects → dotted keys."""
    keys: list[str] = []
    stack = [(prefix, entries)]
    while stack:
        path, mapping = stack.pop()
        for key, value in mapping.items():
            if isinstance(value, Mapping):
                stack.append((f"{path}{key}.", value))
            else:
                keys.append(f"{path}{key}")
    return keys


def rest_field_names(body: Any, model: Model) -> dict[str, str]:
    """{field path in the gRPC request: the same field's path in this REST body}.

    Per-step tensors take the key the body used (`next.done` or `done`), else REST's first
    spelling (`next.done`); observations are `trajectory.<input>` and `trajectory.next.<input>`;
    knobs live under `estimator` / `loss`.
    """
    names = dict(KNOB_NAMES)
    for key, (field, _) in reversed(PER_STEP_KEYS.items()):  # the first spelling wins
        names[f"trajectory.{field}"] = f"trajectory.{key}"
    entries = body.get("trajectory") if isinstance(body, Mapping) else None
    if isinstance(entries, Mapping):
        for key in _dotted_keys(entries):
            if key in PER_STEP_KEYS:
                names[f"trajectory.{PER_STEP_KEYS[key][0]}"] = f"trajectory.{key}"
    names["trajectory.form"] = "form"
    inputs = [spec.name for spec in model.manifest.inputs]
    for name in inputs:
        names[f"trajectory.observation[{name!r}]"] = f"trajectory.{name}"
        names[f"trajectory.next_observation[{name!r}]"] = f"trajectory.next.{name}"
    if len(inputs) == 1:  # the map as a whole is the one input's key
        names["trajectory.observation"] = f"trajectory.{inputs[0]}"
        names["trajectory.next_observation"] = f"trajectory.next.{inputs[0]}"
    else:  # several: the message lists the keys, of the trajectory or of its `next`
        names["trajectory.observation"] = "trajectory.*"
        names["trajectory.next_observation"] = "trajectory.next.*"
    return names


def _renamed(text: str, names: Mapping[str, str]) -> str:
    """`text` with every whole field path of `names` replaced (longest first, in one pass)."""
    paths = sorted(names, key=len, reverse=True)
    pattern = re.compile(
        r"(?<![\w.'\[])(" + "|".join(re.escape(path) for path in paths) + r")(?![\w\[])"
    )
    return pattern.sub(lambda match: names[match.group(1)], text)


def _squeezed(body: Any, message: str) -> bool:
    """Whether `message` gives shapes of a per-step field that a torchrl_shapes body sent with a
    trailing 1 (the checks see them without it)."""
    if not isinstance(body, Mapping) or body.get("torchrl_shapes") is not True:
        return False
    field = message.partition(":")[0]
    per_step = field.removeprefix("trajectory.") in PER_STEP_KEYS or field in _LOSS_PER_STEP
    return per_step and "shape [" in message


def with_rest_names(error: ServiceError, body: Any, model: Model) -> ServiceError:
    """`error` (from the shared handler, for the request converted from `body`) with the fields
    named as the body wrote them (and, for a torchrl_shapes body, a word on the shapes it
    quotes); the same type, status and everything else."""
    message = _renamed(error.message, rest_field_names(body, model))
    if _squeezed(body, message):
        message += " (shapes without torchrl_shapes' trailing 1)"
    if message == error.message:
        return error
    renamed = copy.copy(error)
    renamed.message = message
    renamed.args = (message,)
    return renamed
