"""The state the handlers work on: the server's models and their batchers."""

from __future__ import annotations

from dataclasses import dataclass, field

from service.models.model import Model
from service.models.registry import ModelRegistry
from service.runtime.batching import Batcher


@dataclass
class Runtime:
    """The models a server holds, and the dynamic batcher of each model that batches."""

    registry: ModelRegistry
    batchers: dict[str, Batcher] = field(default_factory=dict)
    # The largest response the transport may send (None = no limit): larger ones are refused
    # before the work, not after it.
    max_message_bytes: int | None = None

    def model(self, name: str) -> Model:
        """The model called `name` (empty = the default model); NOT_FOUND otherwise."""
        return self.registry.get(name)

    def batcher(self, model: Model) -> Batcher | None:
        """The model's batcher, or None when its requests evaluate on their own."""
        return self.batchers.get(model.name)
