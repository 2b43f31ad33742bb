"""JSON schemas of REST bodies read from the protobuf messages (for the OpenAPI document).

`knob_choices` describes the `estimator` / `loss` of a compute body as `service.wire.json` reads
it: a name, or an object with `name` and that oneof member's fields (a Coefficient as a number
or a per-step list, a nested options message as an object, an enum by its lower-case name), each
number's range from the registry's `Knob`. `response_schema` describes a response message as
`service.wire.json.message_to_json` writes it. A new estimator or loss appears by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from service.knobs import Knob
from service.pb.advantage.v1 import advantage_pb2 as pb

__all__ = ["knob_choices", "response_schema"]

# The request message holding each oneof, and the response message of each model RPC.
_ONEOF_MESSAGES = {"estimator": pb.ComputeAdvantageRequest, "loss": pb.ComputeLossRequest}
_RESPONSES = {"ListModels": pb.ListModelsResponse, "GetModel": pb.GetModelResponse}


def enum_names(field: FieldDescriptor) -> list[str]:
    """An enum's values as REST spells them ("smooth_l1", "float32"), without UNSPECIFIED."""
    values = field.enum_type.values
    prefix = values[0].name.removesuffix("UNSPECIFIED")
    return [value.name.removeprefix(prefix).lower() for value in values if value.number != 0]


def _scalar(field: FieldDescriptor) -> dict[str, Any]:
    if field.type == field.TYPE_ENUM:
        return {"enum": enum_names(field)}
    if field.type == field.TYPE_BOOL:
        return {"type": "boolean"}
    if field.type in (field.TYPE_DOUBLE, field.TYPE_FLOAT):
        return {"type": "number"}
    if field.type == field.TYPE_STRING:
        return {"type": "string"}
    return {"type": "integer"}


def _knob(field: FieldDescriptor, knobs: Mapping[str, Knob], coefficient: Any) -> dict[str, Any]:
    """A knob field's schema: its JSON type and, from the registry, its range."""
    if field.message_type is pb.Coefficient.DESCRIPTOR:
        return coefficient
    if field.message_type is not None:
        return _knob_object(field.message_type, knobs, coefficient)
    schema = _scalar(field)
    knob = knobs.get(field.name)
    if knob is not None and schema.get("type") in ("number", "integer"):
        default = "the model's default" if knob.model_default else "its default"
        schema["description"] = f"{knob.expected.replace('value', 'number')}; absent = {default}."
    return schema


def _knob_object(
    descriptor: Descriptor, knobs: Mapping[str, Knob], coefficient: Any
) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {f.name: _knob(f, knobs, coefficient) for f in descriptor.fields},
    }


def knob_choices(
    oneof: str, choices: Mapping[str, Any], coefficient: dict[str, Any]
) -> list[dict[str, Any]]:
    """[{"enum": names}, one object schema per member] for the `oneof` ("estimator" or "loss")
    of a compute body; `choices` is the registry (name → entry with `knobs`), `coefficient` the
    schema of a γ/λ-like knob."""
    members = _ONEOF_MESSAGES[oneof].DESCRIPTOR.oneofs_by_name[oneof].fields
    objects, every_name = [], []
    for member in members:
        if member.name not in choices:
            continue
        entry = choices[member.name]
        # A registry entry may accept other names for the same member (TorchRL's, e.g.).
        names = [member.name, *getattr(entry, "torchrl_names", ())]
        every_name.extend(names)
        schema = _knob_object(member.message_type, entry.knobs, coefficient)
        schema["title"] = member.name
        schema["required"] = ["name"]
        name = {"const": member.name} if len(names) == 1 else {"enum": names}
        schema["properties"] = {"name": name, **schema["properties"]}
        objects.append(schema)
    return [{"enum": every_name}, *objects]


def _message(descriptor: Descriptor, notes: Mapping[str, str]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for field in descriptor.fields:
        nested = field.message_type
        if nested is None:
            schema = _scalar(field)
        else:  # an unset sub-message is null (ModelInfo.action without an actor)
            schema = _message(nested, notes)
            if not field.is_repeated:
                schema["type"] = ["object", "null"]
        if field.is_repeated:
            schema = {"type": "array", "items": schema}
        note = notes.get(f"{descriptor.name}.{field.name}")
        if note:
            schema = {**schema, "description": note}
        properties[field.name] = schema
    return {"type": "object", "properties": properties}


def response_schema(rpc: str, notes: Mapping[str, str]) -> dict[str, Any]:
    """The JSON schema of `rpc`'s response ("ListModels", "GetModel") as REST writes it; `notes`
    ({"Message.field": text}) describe fields."""
    return _message(_RESPONSES[rpc].DESCRIPTOR, notes)
