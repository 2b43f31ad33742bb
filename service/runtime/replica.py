"""A replica's side of replication: what it knows of its learner, what it holds, and the rules
its handlers apply (refuse writes, refuse reads of a model not copied yet, how long to wait for a
version).

`service.replication.follower` keeps a `ReplicaState` up to date (announcements on the event
loop, `install` in its sync thread); the handlers (worker threads) and the metrics read it.
Installing a copy: every tensor staged on the CPU first, then one copy under the model's lock, so
a request sees the old version or the new one, never a mix.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from service.errors import FailedPrecondition, InvalidArgument, Unavailable
from service.models.model import Model
from service.runtime.parameters import named_tensors

#: Longest a replica waits for a `min_parameter_version` it does not hold (seconds); also at most
#: half the call's remaining deadline, so a retry on another replica has time left.
MAX_VERSION_WAIT_S = 5.0


@dataclass
class ModelSync:
    """One model's replication state."""

    announced: int | None = None  # the learner's latest version, as last announced
    held: int | None = None  # the learner's version installed here (None: no copy yet)
    current_at: float = field(default_factory=time.monotonic)  # last known up to date
    syncs: int = 0  # copies installed

    @property
    def current(self) -> bool:
        """Whether this replica holds the learner's latest announced version."""
        return self.held is not None and self.announced is not None and self.held >= self.announced


class ReplicaState:
    """A replica of `learner`: per model, the version announced and the version held; whether
    the learner is connected; whether the replica has been ready (caught up) once."""

    def __init__(self, learner: str, models: list[Model]) -> None:
        self.learner = learner
        self.connected = False
        self.ready = False  # caught up once: health SERVING from then on
        self.models = {model.name: ModelSync() for model in models}

    # -- updates (the follower, on the event loop) -------------------------------------------------

    def announce(self, name: str, version: int) -> None:
        """The learner says `name` is at `version`."""
        sync = self.models[name]
        if sync.current:
            sync.current_at = time.monotonic()  # current until this moment
        sync.announced = version

    def install(self, model: Model, staged: dict[str, torch.Tensor], version: int) -> None:
        """Replace every named tensor of `model` with `staged` (CPU tensors already checked for
        shape and dtype) and make its version the learner's `version`, all under the model's
        lock: readers see the old copy or the new one, never a mix. (A worker thread.)"""
        with model.lock:
            current = named_tensors(model)
            if set(staged) != set(current):
                missing = sorted(set(current) - set(staged))[:5]
                extra = sorted(set(staged) - set(current))[:5]
                raise InvalidArgument(
                    f"tensors: a copy must hold every parameter of model {model.name!r}; "
                    f"missing {missing}, unknown {extra}"
                )
            with torch.no_grad():
                for name, value in staged.items():
                    current[name].copy_(value.to(current[name].device))
            sync = self.models[model.name]
            sync.held = version  # before the commit's listeners: the copy is servable
            sync.syncs += 1
            if sync.current:
                sync.current_at = time.monotonic()
            model.commit_version(version)

    def holds_copy(self, model: Model) -> bool:
        """Whether `model` holds a copy of the learner's parameters (what WatchModels may
        announce, what reads may use)."""
        return self.models[model.name].held is not None

    def set_connected(self, connected: bool) -> None:
        """The watch stream to the learner started (True) or ended (False)."""
        now = time.monotonic()
        for sync in self.models.values():
            if sync.current and self.connected:
                sync.current_at = now  # up to date until the learner went away
        self.connected = connected

    @property
    def caught_up(self) -> bool:
        """Whether every model holds the learner's latest announced version."""
        return all(sync.current for sync in self.models.values())

    # -- lag (the metrics) ------------------------------------------------------------------------

    def versions_behind(self, name: str, held: int) -> int:
        """How many versions of `name` the learner announced that this replica does not hold
        (`held`: the model's version now, 0 before the first copy)."""
        announced = self.models[name].announced
        return 0 if announced is None else max(0, announced - held)

    def seconds_since_sync(self, name: str) -> float:
        """0 while connected and holding the learner's latest version of `name`; otherwise the
        seconds since this replica last knew it was up to date (since start, before the first
        copy)."""
        sync = self.models[name]
        if self.connected and sync.current:
            return 0.0
        return max(0.0, time.monotonic() - sync.current_at)

    # -- rules (the handlers, worker threads) -----------------------------------------------------

    def refuse_write(self, what: str) -> None:
        """A write reached a replica: FAILED_PRECONDITION naming the learner."""
        raise FailedPrecondition(
            f"this server is a replica of {self.learner}; send {what} to the learner"
        )

    def require_copy(self, model: Model) -> None:
        """UNAVAILABLE until `model` holds a copy of the learner's parameters."""
        if not self.holds_copy(model):
            raise Unavailable(
                f"this replica of {self.learner} has not copied model {model.name!r} from it "
                "yet; retry (another replica may hold it)"
            )

    def version_wait(self, remaining: float | None) -> float:
        """How long a read may wait for a version this replica does not hold yet: none while the
        learner is away (another replica may have it), else half the call's remaining deadline,
        at most `MAX_VERSION_WAIT_S`."""
        if not self.connected:
            return 0.0
        if remaining is None:
            return MAX_VERSION_WAIT_S
        return max(0.0, min(MAX_VERSION_WAIT_S, remaining / 2))
