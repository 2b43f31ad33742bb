"""A request whose bytes are not a valid protobuf message, as the servicer receives it."""

from __future__ import annotations

from google.protobuf.message import DecodeError


class MalformedRequest:
    """Stands in for a request whose bytes are not a valid protobuf message."""

    def __init__(self, message_type: str, error: DecodeError) -> None:
        self.message_type = message_type
        self.error = error

    def describe(self) -> str:
        """The INVALID_ARGUMENT message."""
        return f"request: not a valid {self.message_type} ({self.error})"
