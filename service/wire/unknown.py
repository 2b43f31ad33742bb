"""Refusing request fields this server does not know.

A client built from a newer contract may set a field (say a new member of the `loss` oneof) that
this server's generated code does not have: protobuf keeps it as an unknown field and the request
would silently run the default estimator or loss. Every request is checked here first; an
unknown field is INVALID_ARGUMENT naming its number and where it sits.
"""

from __future__ import annotations

from google.protobuf import unknown_fields
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from service.errors import InvalidArgument

_MESSAGE = FieldDescriptor.TYPE_MESSAGE
# How to walk a field, by descriptor: computed once per field (`GetOptions()` is slow).
_SKIP, _MAP_OF_MESSAGES, _REPEATED, _SINGLE = range(4)
_KIND: dict[FieldDescriptor, int] = {}


def _kind(field: FieldDescriptor) -> int:
    kind = _KIND.get(field)
    if kind is None:
        if field.type != _MESSAGE:
            kind = _SKIP
        elif field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            kind = _MAP_OF_MESSAGES if value.type == _MESSAGE else _SKIP
        else:
            kind = _REPEATED if field.is_repeated else _SINGLE
        _KIND[field] = kind
    return kind


def _has_unknown(message: Message) -> bool:
    """Whether `message` or a message inside it has an unknown field (no paths: the fast walk
    every request takes; `refuse_unknown_fields` walks again to say where)."""
    if len(unknown_fields.UnknownFieldSet(message)):
        return True
    for field, value in message.ListFields():
        kind = _kind(field)
        if kind == _SINGLE:
            if _has_unknown(value):
                return True
        elif kind == _REPEATED:
            if any(_has_unknown(item) for item in value):
                return True
        elif kind == _MAP_OF_MESSAGES and any(_has_unknown(item) for item in value.values()):
            return True
    return False


def refuse_unknown_fields(message: Message, where: str = "request") -> None:
    """Raise INVALID_ARGUMENT if `message` or any message inside it carries an unknown field."""
    if where == "request" and not _has_unknown(message):
        return
    unknown = unknown_fields.UnknownFieldSet(message)
    if len(unknown):
        numbers = sorted({field.field_number for field in unknown})
        raise InvalidArgument(
            f"{where}: unknown field number {numbers[0] if len(numbers) == 1 else numbers} in "
            f"{message.DESCRIPTOR.full_name}; the client was built from a newer contract than "
            "this server's (upgrade the server, or leave the field unset)"
        )
    for field, value in message.ListFields():
        kind = _kind(field)
        if kind == _SKIP:
            continue
        path = f"{where}.{field.name}" if where != "request" else field.name
        if kind == _MAP_OF_MESSAGES:
            for key, item in value.items():
                refuse_unknown_fields(item, f"{path}[{key!r}]")
        elif kind == _REPEATED:
            for index, item in enumerate(value):
                refuse_unknown_fields(item, f"{path}[{index}]")
        else:
            refuse_unknown_fields(value, path)
