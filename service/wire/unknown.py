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


def refuse_unknown_fields(message: Message, where: str = "request") -> None:
    """Raise INVALID_ARGUMENT if `message` or any message inside it carries an unknown field."""
    unknown = unknown_fields.UnknownFieldSet(message)
    if len(unknown):
        numbers = sorted({field.field_number for field in unknown})
        raise InvalidArgument(
            f"{where}: unknown field number {numbers[0] if len(numbers) == 1 else numbers} in "
            f"{message.DESCRIPTOR.full_name}; the client was built from a newer contract than "
            "this server's (upgrade the server, or leave the field unset)"
        )
    for field, value in message.ListFields():
        if field.type != _MESSAGE:
            continue
        path = f"{where}.{field.name}" if where != "request" else field.name
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].type == _MESSAGE:
                for key, item in value.items():
                    refuse_unknown_fields(item, f"{path}[{key!r}]")
        elif field.is_repeated:
            for index, item in enumerate(value):
                refuse_unknown_fields(item, f"{path}[{index}]")
        else:
            refuse_unknown_fields(value, path)
