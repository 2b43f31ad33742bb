"""The version board (WatchModels, read-your-writes waits), the replica's state and backoff,
without a server."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest
import torch

from service.errors import FailedPrecondition, Unavailable
from service.models.demo import demo_model
from service.replication.follower import BACKOFF_INITIAL_S, BACKOFF_MAX_S, backoff_delay
from service.runtime.parameters import named_tensors
from service.runtime.replica import MAX_VERSION_WAIT_S, ReplicaState
from service.runtime.versions import VersionBoard, require_version


class CountingLoop:
    """Stands in for the event loop: counts the commits handed to it."""

    def __init__(self) -> None:
        self.calls = 0

    def call_soon_threadsafe(self, *args: object) -> None:
        self.calls += 1


def test_commits_cost_nothing_while_nobody_watches_or_waits() -> None:
    model = demo_model(torch.device("cpu"))
    board = VersionBoard([model])
    loop = CountingLoop()
    board.bind(loop)  # type: ignore[arg-type]
    with model.lock:
        model.commit_version()
    assert loop.calls == 0
    watch = board.watch([model])
    with model.lock:
        model.commit_version()
    assert loop.calls == 1
    board.unwatch(watch)
    with model.lock:
        model.commit_version()
    assert loop.calls == 1
    board.close()
    assert model.version_listeners == []


def test_a_slow_watcher_gets_the_latest_version_once() -> None:
    async def scenario() -> list[list[tuple[str, int]]]:
        model = demo_model(torch.device("cpu"))
        board = VersionBoard([model])
        board.bind(asyncio.get_running_loop())
        watch = board.watch([model])
        seen = [await watch.next()]
        for _ in range(3):  # three commits before the watcher reads again
            await asyncio.to_thread(lambda: model.commit_version())
        await asyncio.sleep(0)
        seen.append(await watch.next())
        board.close()
        seen.append(await watch.next())  # closed: the stream ends
        return seen

    assert asyncio.run(scenario()) == [[("demo", 0)], [("demo", 3)], []]


def test_waiters_wake_on_the_commit_from_another_thread_or_time_out() -> None:
    async def scenario() -> tuple[bool, bool]:
        model = demo_model(torch.device("cpu"))
        board = VersionBoard([model])
        board.bind(asyncio.get_running_loop())

        def commit_later() -> None:
            threading.Event().wait(0.05)
            with model.lock:
                model.commit_version(2)

        threading.Thread(target=commit_later).start()
        reached = await board.wait_for(model, 2, timeout=60)
        missed = await board.wait_for(model, 3, timeout=0.05)
        return reached, missed

    assert asyncio.run(scenario()) == (True, False)


def test_version_errors_tell_a_learner_from_a_replica() -> None:
    model = demo_model(torch.device("cpu"))
    require_version(model, 3, None, None)
    require_version(model, 3, 3, "learner:1")
    with pytest.raises(FailedPrecondition, match="is at version 3, not yet at 4"):
        require_version(model, 3, 4, None)
    with pytest.raises(Unavailable, match=r"replica of learner:1 holds version 3 .* not yet 4"):
        require_version(model, 3, 4, "learner:1")


def test_replica_state_lag_and_waits() -> None:
    model = demo_model(torch.device("cpu"))
    state = ReplicaState("learner:1", [model])
    assert state.version_wait(10.0) == 0.0  # not connected: no point in waiting
    state.set_connected(True)
    assert state.version_wait(None) == MAX_VERSION_WAIT_S
    assert state.version_wait(2.0) == 1.0
    state.announce("demo", 4)
    assert state.versions_behind("demo", 0) == 4 and not state.caught_up
    assert state.seconds_since_sync("demo") != 0.0  # behind: not the "up to date" state
    staged = {name: t.clone() for name, t in named_tensors(model).items()}
    state.install(model, staged, 4)
    assert state.caught_up and state.versions_behind("demo", 4) == 0
    assert state.seconds_since_sync("demo") == 0.0  # the "up to date" state
    state.set_connected(False)
    assert state.seconds_since_sync("demo") >= 0.0 and state.caught_up


def test_install_takes_every_tensor_and_the_learners_version() -> None:
    model = demo_model(torch.device("cpu"))
    state = ReplicaState("learner:1", [model])
    board = VersionBoard([model], state.holds_copy)
    watch = board.watch([model])
    assert watch._pending == {}  # no copy yet: nothing to announce
    staged = {name: torch.full_like(t, 0.5) for name, t in named_tensors(model).items()}
    state.install(model, staged, 7)
    assert model.parameter_version == 7 and state.holds_copy(model)
    assert all(bool((t == 0.5).all()) for t in named_tensors(model).values())
    watch.offer(model)
    assert watch._pending == {"demo": 7}
    partial = dict(list(staged.items())[:2])
    with pytest.raises(Exception, match="a copy must hold every parameter"):
        state.install(model, partial, 8)
    assert model.parameter_version == 7


def test_backoff_grows_exponentially_with_jitter_up_to_the_bound() -> None:
    rng = random.Random(0)
    for attempt in range(40):
        ceiling = min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2**attempt)
        delays = {backoff_delay(attempt, rng) for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered
