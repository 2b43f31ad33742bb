"""The state the handlers work on: the server's models, their batchers, their versions, and, on
a replica, what it knows of its learner."""

from __future__ import annotations

from dataclasses import dataclass, field

from service.models.model import Model
from service.models.registry import ModelRegistry
from service.runtime.batching import Batcher
from service.runtime.replica import ReplicaState
from service.runtime.versions import VersionBoard, require_version


@dataclass
class Runtime:
    """The models a server holds, and the dynamic batcher of each model that batches."""

    registry: ModelRegistry
    batchers: dict[str, Batcher] = field(default_factory=dict)
    # The largest response the transport may send (None = no limit): larger ones are refused
    # before the work, not after it.
    max_message_bytes: int | None = None
    # DreamerV3: the longest imagination a request may ask for (--max-imagination-steps).
    max_imagination_steps: int = 256
    # On a replica (`--follow`): its learner and what it holds; None on a learner.
    replica: ReplicaState | None = None
    # Watchers (WatchModels) and waiters (min_parameter_version) of the models' versions.
    versions: VersionBoard = field(init=False)

    def __post_init__(self) -> None:
        replica = self.replica
        self.versions = VersionBoard(self.registry, None if replica is None else replica.holds_copy)

    def model(self, name: str) -> Model:
        """The model called `name` (empty = the default model); NOT_FOUND otherwise."""
        return self.registry.get(name)

    def batcher(self, model: Model) -> Batcher | None:
        """The model's batcher, or None when its requests evaluate on their own."""
        return self.batchers.get(model.name)

    @property
    def learner(self) -> str | None:
        """The learner this server follows (None: this server is the learner)."""
        return None if self.replica is None else self.replica.learner

    def refuse_write_on_replica(self, what: str) -> None:
        """FAILED_PRECONDITION naming the learner when this server is a replica."""
        if self.replica is not None:
            self.replica.refuse_write(what)

    def readable(self, model: Model, minimum: int | None) -> None:
        """Refuse a read up front: a replica without a copy of `model` yet, or a model not at
        `minimum` (see `require_version`); the answer's own version is checked again after."""
        if self.replica is not None:
            self.replica.require_copy(model)
        self.require_version(model, model.parameter_version, minimum)

    def require_version(self, model: Model, have: int, minimum: int | None) -> None:
        """Refuse an answer of version `have` when `minimum` was asked for (see
        `service.runtime.versions.require_version`)."""
        require_version(model, have, minimum, self.learner)

    async def wait_for_version(
        self, model: Model, minimum: int | None, remaining: float | None
    ) -> None:
        """On a replica, wait (within `remaining` seconds of the call's deadline, see
        `ReplicaState.version_wait`) until `model` is at `minimum`; a learner never waits."""
        if minimum is None or self.replica is None or model.parameter_version >= minimum:
            return
        await self.versions.wait_for(model, minimum, self.replica.version_wait(remaining))
