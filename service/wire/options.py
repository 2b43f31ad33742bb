"""Reading an estimator's or a loss's knobs from its request message, generically.

The message's scalar fields (and those of a nested options message, e.g. `PolicyLossOptions`)
are matched by name against the registry entry's `Knob`s: an `optional` field that is unset is
left out (the maths core's default applies, or the model's for `model_default` knobs); plain
`bool` and enum fields are always read; an out-of-range value is INVALID_ARGUMENT naming
`<where>.<field path>`, the expected range and the value. `Coefficient` fields are handed to
`coefficient` (a scalar or a per-step tensor).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from service.errors import InvalidArgument
from service.knobs import Knob
from service.models.manifest import Defaults

_MESSAGE = FieldDescriptor.TYPE_MESSAGE
_ENUM = FieldDescriptor.TYPE_ENUM


def _enum_value(field: FieldDescriptor, number: int, where: str) -> str:
    """An enum's value as the maths core's lower-case name ("CRITIC_LOSS_L2" → "l2")."""
    value = field.enum_type.values_by_number.get(number)
    if value is None:
        raise InvalidArgument(f"{where}: unknown value {number}")
    prefix = field.enum_type.values[0].name.removesuffix("UNSPECIFIED")
    return value.name.removeprefix(prefix).lower()


def read_knobs(
    message: Message,
    knobs: Mapping[str, Knob],
    where: str,
    defaults: Defaults,
    coefficient: Callable[[Message, str], Any],
    enum_defaults: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """{knob: value} for the knobs `message` sets (see the module docstring).

    `coefficient(submessage, field_path)` decodes a `Coefficient`; `enum_defaults` gives the
    value of an enum left at its UNSPECIFIED zero.
    """
    options: dict[str, Any] = {}
    for name, knob in knobs.items():
        if knob.model_default:
            options[name] = getattr(defaults, name)
    _read(message, knobs, where, coefficient, enum_defaults or {}, options)
    return options


def _read(
    message: Message,
    knobs: Mapping[str, Knob],
    where: str,
    coefficient: Callable[[Message, str], Any],
    enum_defaults: Mapping[str, str],
    options: dict[str, Any],
) -> None:
    for field in message.DESCRIPTOR.fields:
        path = f"{where}.{field.name}"
        if field.type == _MESSAGE and field.message_type.name != "Coefficient":
            _read(getattr(message, field.name), knobs, path, coefficient, enum_defaults, options)
            continue
        knob = knobs.get(field.name)
        if knob is None or (field.has_presence and not message.HasField(field.name)):
            continue
        value = getattr(message, field.name)
        if field.type == _MESSAGE:
            options[field.name] = coefficient(value, path)
        elif field.type == _ENUM:
            options[field.name] = (
                enum_defaults[field.name]
                if value == 0 and field.name in enum_defaults
                else _enum_value(field, value, path)
            )
        elif isinstance(value, bool):
            options[field.name] = value
        else:
            if not knob.accepts(value):
                raise InvalidArgument(f"{path}: expected {knob.expected}, got {value}")
            options[field.name] = value
