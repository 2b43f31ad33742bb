"""The inline rule (`service.api.inline`): which measured runs are quick, when a slow model is
tried again, and the thread clock's run-queue time."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from service.api import inline
from service.api.inline import InlinePolicy, SmallRun, measured

MS = 1e-3


def test_preemption_is_not_counted_against_a_run_and_waiting_is() -> None:
    # 12 ms on the clock, 10 of them waiting for a core: held 2 ms, quick.
    assert SmallRun(wall_s=12 * MS, cpu_s=2 * MS, preempted_s=10 * MS, pooled=False).quick
    # 12 ms on the clock, 10 of them blocked (a sleep, a device): held 12 ms, slow.
    assert not SmallRun(wall_s=12 * MS, cpu_s=2 * MS, preempted_s=0.0, pooled=False).quick
    # Computing longer than INLINE_MAX_S is slow however it was scheduled.
    assert not SmallRun(wall_s=30 * MS, cpu_s=20 * MS, preempted_s=10 * MS, pooled=False).quick


def _run(held_ms: float, cpu_ms: float, pooled: bool) -> SmallRun:
    return SmallRun(wall_s=held_ms * MS, cpu_s=cpu_ms * MS, preempted_s=0.0, pooled=pooled)


def test_a_model_never_measured_goes_to_the_pool() -> None:
    assert not InlinePolicy().allows("m")


def test_a_quick_run_allows_inline_wherever_it_ran() -> None:
    policy = InlinePolicy()
    for pooled in (False, True):
        policy.record("m", _run(1, 1, pooled))
        assert policy.allows("m") and policy.allows("m")


def test_one_slow_run_on_the_loop_among_quick_ones_keeps_the_model_inline_two_do_not(
    monkeypatch,
) -> None:
    monkeypatch.setattr(inline, "INLINE_RETRY_S", 3600.0)
    policy = InlinePolicy()
    policy.record("m", _run(1, 1, pooled=False))
    policy.record("m", _run(7, 7, pooled=False))  # a garbage collection, say
    assert policy.allows("m")
    policy.record("m", _run(1, 1, pooled=False))
    policy.record("m", _run(1, 1, pooled=False))
    policy.record("m", _run(7, 7, pooled=False))
    assert policy.allows("m")  # the first slow run has left the window of three
    policy.record("m", _run(8, 8, pooled=False))
    assert not policy.allows("m")  # two of the last three


def test_a_quick_retry_brings_the_model_back_at_once(monkeypatch) -> None:
    monkeypatch.setattr(inline, "INLINE_RETRY_S", 0.0)
    policy = InlinePolicy()
    for _ in range(3):
        policy.record("m", _run(9, 3, pooled=False))
    policy.record("m", _run(60, 2, pooled=True))
    assert policy.allows("m")  # the retry
    policy.record("m", _run(1, 1, pooled=False))  # quick: the slow runs before it are forgotten
    assert policy.allows("m")


def test_a_run_slow_inline_is_not_retried_until_one_runs_on_the_pool(monkeypatch) -> None:
    monkeypatch.setattr(inline, "INLINE_RETRY_S", 0.0)
    policy = InlinePolicy()
    policy.record("m", _run(50, 1, pooled=False))  # blocked 49 ms on the event loop
    assert not policy.allows("m")
    policy.record("m", _run(50, 1, pooled=True))  # on the pool: maybe only the GIL's waits
    assert policy.allows("m")


def test_a_run_slow_on_the_pool_by_its_waits_is_retried_once_per_interval(monkeypatch) -> None:
    monkeypatch.setattr(inline, "INLINE_RETRY_S", 3600.0)
    policy = InlinePolicy()
    policy.record("m", _run(50, 1, pooled=True))
    assert policy.allows("m")  # the retry, counted when granted
    assert not policy.allows("m")  # the next waits for the interval
    policy.record("m", _run(50, 1, pooled=True))  # the retry went to the pool after all
    assert not policy.allows("m")
    assert policy.allows("n") is False  # per model


def test_the_start_up_measurement_counts_as_a_try(monkeypatch) -> None:
    monkeypatch.setattr(inline, "INLINE_RETRY_S", 3600.0)
    policy = InlinePolicy()
    policy.record("m", _run(50, 1, pooled=False), tried_inline=True)
    policy.record("m", _run(50, 1, pooled=True))
    assert not policy.allows("m")


def test_a_run_slow_by_its_own_work_is_never_retried(monkeypatch) -> None:
    monkeypatch.setattr(inline, "INLINE_RETRY_S", 0.0)
    policy = InlinePolicy()
    policy.record("m", _run(50, 20, pooled=True))
    assert not policy.allows("m") and not policy.allows("m")


def test_measured_records_even_when_the_work_raises() -> None:
    runs: list[SmallRun] = []

    def fail() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError):
        measured(fail, runs.append, pooled=True)()
    assert len(runs) == 1 and runs[0].pooled and runs[0].wall_s >= 0


@pytest.mark.skipif(not os.path.exists("/proc/thread-self/schedstat"), reason="Linux schedstat")
def test_the_thread_clock_sees_preemption_on_a_shared_core() -> None:
    # This process and a spinning one share one core: a 200 ms spin here is preempted for
    # part of it, which the run's preempted_s shows and its held_s leaves out.
    allowed = os.sched_getaffinity(0)
    core = min(allowed)
    spinner = subprocess.Popen(
        [sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{core}}})\nwhile True: pass"]
    )
    try:
        os.sched_setaffinity(0, {core})
        time.sleep(0.2)  # the spinner is running
        runs: list[SmallRun] = []

        def spin() -> None:
            end = time.perf_counter() + 0.2
            while time.perf_counter() < end:
                pass

        measured(spin, runs.append, pooled=False)()
    finally:
        os.sched_setaffinity(0, allowed)
        spinner.kill()
        spinner.wait()
    (run,) = runs
    assert run.preempted_s > 0.02, run
    assert run.held_s < run.wall_s - 0.02, run
    assert abs(run.held_s - run.cpu_s) < 0.02, run  # what is left is the spin's own CPU time
