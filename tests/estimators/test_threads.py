"""The thread policy: which kernel build runs, with how many threads (no timing here)."""

from __future__ import annotations

import threading

import pytest
import torch

from service.estimators import _kernels, gae, threads
from service.estimators.threads import ThreadPolicy
from tests.support.estimators import make_batch


@pytest.fixture
def policy(monkeypatch):
    """Install a policy for one test (the module global is restored afterwards)."""

    def install(new: ThreadPolicy) -> None:
        monkeypatch.setattr(threads, "_policy", new)

    return install


def test_small_work_is_serial_whatever_the_budget(policy) -> None:
    policy(ThreadPolicy(budget=8, parallel_min_elements=1 << 18, watch_load=False))
    assert threads.kernel_threads(64, 64 * 128) == 1
    assert threads.kernel_threads(512, 512 * 511) == 1
    assert threads.kernel_threads(512, 512 * 512) == 8


def test_one_row_is_serial(policy) -> None:
    policy(ThreadPolicy(budget=8, parallel_min_elements=0, watch_load=False))
    assert threads.kernel_threads(1, 10**7) == 1
    assert threads.kernel_threads(3, 10**7) == 3  # never more threads than rows


def test_budget_one_is_always_serial(policy) -> None:
    policy(ThreadPolicy(budget=1, parallel_min_elements=0, watch_load=False))
    assert threads.kernel_threads(1024, 1 << 20) == 1


def test_load_caps_the_threads(policy, monkeypatch) -> None:
    policy(ThreadPolicy(budget=4, parallel_min_elements=0, watch_load=True))
    monkeypatch.setattr(threads, "free_cores", lambda: 1)
    assert threads.kernel_threads(1024, 1 << 20) == 1
    monkeypatch.setattr(threads, "free_cores", lambda: 3)
    assert threads.kernel_threads(1024, 1 << 20) == 3


def test_free_cores_reads_the_runnable_count(monkeypatch) -> None:
    monkeypatch.setattr(threads, "_CORES", 4)
    for line, own, free in (
        (b"0.50 0.40 0.30 1/200 999\n", 1, 4),  # only the reader runs
        (b"0.50 0.40 0.30 3/200 999\n", 1, 2),  # two other tasks
        (b"0.50 0.40 0.30 3/200 999\n", 3, 4),  # the reader and two of its own threads
        (b"0.50 0.40 0.30 5/200 999\n", 2, 1),  # three other tasks
        (b"9.00 9.00 9.00 17/200 999\n", 1, 1),  # never below one: the caller's own core
    ):
        monkeypatch.setattr(threads.os, "pread", lambda fd, n, off, line=line: line)
        monkeypatch.setattr(threads, "_LOADAVG", 3)
        monkeypatch.setattr(threads, "own_runnable", lambda own=own: own)
        assert threads.free_cores() == free
    monkeypatch.setattr(threads, "_LOADAVG", None)
    assert threads.free_cores() == 4


def test_own_runnable_counts_the_caller() -> None:
    # Read from /proc/self/task: the calling thread is running while it reads.
    assert 1 <= threads.own_runnable() <= threading.active_count() + 8


def test_for_workers_splits_the_cores() -> None:
    assert threads.for_workers(2, cores=2).budget == 1
    assert threads.for_workers(2, cores=8).budget == 4
    assert threads.for_workers(3, cores=8).budget == 2
    assert threads.for_workers(16, cores=8).budget == 1


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="budget"):
        ThreadPolicy(budget=0)


def test_set_policy_returns_the_previous_one() -> None:
    before = threads.policy()
    try:
        previous = threads.set_policy(ThreadPolicy(budget=1))
        assert previous is before
        assert threads.policy() == ThreadPolicy(budget=1)
    finally:
        threads.set_policy(before)


@pytest.mark.parametrize(("budget", "expected"), [(1, ["small"]), (2, [True])])
def test_the_kernel_build_follows_the_policy(policy, monkeypatch, budget, expected):
    """Serial work takes the small-call entry point, parallel work the parallel build."""
    policy(ThreadPolicy(budget=budget, parallel_min_elements=0, watch_load=False))
    fetched: list[bool | str] = []
    original, original_small = _kernels.get, _kernels.get_small

    def get(name: str, parallel: bool = True):
        fetched.append(parallel)
        return original(name, parallel)

    def get_small(name: str, dtype_name: str):
        fetched.append("small")
        return original_small(name, dtype_name)

    monkeypatch.setattr(_kernels, "get", get)
    monkeypatch.setattr(_kernels, "get_small", get_small)
    b = make_batch((4, 16, 1), torch.float64, seed=3)
    gae(0.9, 0.8, b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    assert fetched == expected
