"""Model versions as the event loop sees them: who watches them (WatchModels) and who waits for
one (`min_parameter_version` on a replica).

Versions change in worker threads (an update, SetParameters, a replica installing a copy), under
the model's lock, through `Model.commit_version`. The board's listener hands each change to the
event loop with `loop.call_soon_threadsafe`, and only while someone watches or waits: a server
nobody follows pays one integer read per commit.

No lost wake-ups: a watcher or waiter registers its interest first and reads the version after;
a commit sets the version first and reads the interest after. Whichever runs second sees the
other's write.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable

from service.errors import FailedPrecondition, Unavailable
from service.models.model import Model


class Watch:
    """One WatchModels subscriber: the latest version of each watched model not sent yet
    (a slow reader gets the latest version, not every intermediate one; memory stays bounded)."""

    def __init__(self, models: Iterable[Model], announceable: Callable[[Model], bool]) -> None:
        self.names = frozenset(model.name for model in models)
        self._announceable = announceable
        self._pending: dict[str, int] = {}
        self._sent: dict[str, int] = {}
        self._changed = asyncio.Event()
        self.closed = False

    def offer(self, model: Model) -> None:
        """Note `model`'s version now (on the loop)."""
        if model.name not in self.names or not self._announceable(model):
            return
        version = model.parameter_version
        if model.name not in self._pending and self._sent.get(model.name) == version:
            return  # a duplicate of what the subscriber already has
        self._pending[model.name] = version
        self._changed.set()

    def close(self) -> None:
        """End the stream once the pending versions are sent."""
        self.closed = True
        self._changed.set()

    async def next(self) -> list[tuple[str, int]]:
        """The (model, version) pairs changed since the last call, in name order; [] once
        closed."""
        while not self._pending:
            if self.closed:
                return []
            await self._changed.wait()
            self._changed.clear()
        changed = sorted(self._pending.items())
        self._pending.clear()
        self._sent.update(changed)
        return changed


class VersionBoard:
    """The versions of a server's models, for watchers and waiters on the server's event loop."""

    def __init__(
        self, models: Iterable[Model], announceable: Callable[[Model], bool] | None = None
    ) -> None:
        """`announceable(model)`: whether the model's version may be announced now (a replica
        announces only copies of its learner's versions); default: always."""
        self._models = list(models)
        self._announceable = announceable or (lambda model: True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._interest = 0  # watchers + waiters: commits are forwarded only while > 0
        self._watches: set[Watch] = set()
        self._changed: dict[str, asyncio.Event] = {}
        self._closed = False
        for model in self._models:
            model.version_listeners.append(self._committed)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Forward commits to `loop` (the server's; call from it before serving)."""
        self._loop = loop

    def close(self) -> None:
        """Stop listening to the models and end every watch (the server is stopping)."""
        self._closed = True
        for model in self._models:
            with contextlib.suppress(ValueError):
                model.version_listeners.remove(self._committed)
        for watch in self._watches:
            watch.close()

    # -- worker threads ------------------------------------------------------------------------

    def _committed(self, model: Model) -> None:
        """`Model.commit_version`'s listener (any thread, under the model's lock)."""
        loop = self._loop
        if self._interest and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed: nobody waits
                loop.call_soon_threadsafe(self._publish, model)

    # -- the event loop ------------------------------------------------------------------------

    def _publish(self, model: Model) -> None:
        # Reads the version now, not the one committed: a late call never sends an older one.
        for watch in self._watches:
            watch.offer(model)
        changed = self._changed.pop(model.name, None)
        if changed is not None:
            changed.set()

    def watch(self, models: Iterable[Model]) -> Watch:
        """Subscribe to `models`; their current versions are pending at once. `unwatch` after."""
        watch = Watch(models, self._announceable)
        self._watches.add(watch)
        self._interest += 1
        for model in self._models:  # after registering: see the module docstring
            watch.offer(model)
        if self._closed:
            watch.close()
        return watch

    def unwatch(self, watch: Watch) -> None:
        """End a subscription."""
        if watch in self._watches:
            self._watches.discard(watch)
            self._interest -= 1

    async def wait_for(self, model: Model, minimum: int, timeout: float) -> bool:
        """Wait up to `timeout` seconds until `model` is at version `minimum` or later; whether
        it is."""
        if model.parameter_version >= minimum:
            return True
        deadline = time.monotonic() + timeout
        self._interest += 1
        try:
            while model.parameter_version < minimum and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                changed = self._changed.setdefault(model.name, asyncio.Event())
                if model.parameter_version >= minimum:  # committed while we registered
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), remaining)
        finally:
            self._interest -= 1
        return model.parameter_version >= minimum


def require_version(model: Model, have: int, minimum: int | None, learner: str | None) -> None:
    """Refuse an answer computed with version `have` of `model` when the request asked for
    `minimum` or later: FAILED_PRECONDITION on a learner (it has not reached that version),
    UNAVAILABLE on a replica of `learner` (it may get it soon, another replica may have it)."""
    if minimum is None or have >= minimum:
        return
    if learner is None:
        raise FailedPrecondition(
            f"min_parameter_version: model {model.name!r} is at version {have}, not yet at "
            f"{minimum}"
        )
    raise Unavailable(
        f"min_parameter_version: this replica of {learner} holds version {have} of model "
        f"{model.name!r}, not yet {minimum}; retry (another replica may hold it)"
    )
