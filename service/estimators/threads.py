"""The CPU thread policy: how many threads an estimator kernel may use, decided here only.

Three kinds of threads share the cores: the server's compute workers (one request each), torch's
intra-op pool (value-network passes, losses) and the estimator kernels' numba threads. When they
outnumber the cores, a parallel region waits at its barrier for a worker thread the OS has
descheduled: on 2 cores with two busy processes, GAE at 64×128 took 8 ms instead of 0.06 ms
(TorchRL's vectorised function: 0.8 ms). The policy, in order:

1. **Small work runs serially**, in the calling thread, with no thread pool woken: below
   ``ThreadPolicy.parallel_min_elements`` elements (B·T·F), a second core saves less than the
   wake-up and the barrier cost even on a quiet machine (measured on 2 cores: 256×256 GAE 0.40 ms
   serial, 0.39 ms parallel; 512×512 1.26 ms and 1.09 ms).
2. **A budget per call.** A kernel uses at most ``ThreadPolicy.budget`` threads. A library user
   gets the CPUs the process may run on; a server with W compute workers gives each worker
   ``max(1, cores // W)`` (``for_workers``) and torch's intra-op pool the same number
   (``apply``), so workers × (torch or kernel threads) never exceeds the cores.
3. **Only the cores free now.** Above the threshold a kernel also takes no more threads than
   cores are idle at this moment: cores − (runnable tasks − this process's runnable threads),
   read from ``/proc/loadavg`` and ``/proc/self/task`` (Linux, ~30 µs, and only for work that
   takes a millisecond or more). With one core free the
   serial build runs, so a busy machine costs at most the serial time, never a stalled barrier.

4. **torch's elementwise ops on serial work run in the calling thread too.** V-trace's importance
   ratios are torch's own ``exp`` (numba's differs in the last bit for ~1% of float32 and ~5% of
   float64 values). torch splits a transcendental op across its intra-op pool above 2 048
   elements (``TORCH_SERIAL_ELEMENTS``, ATen's grain for these kernels), and under contention
   that pool stalls exactly as a numba barrier does: V-trace at 64×128 took 8–16 ms, for ~50 µs
   of work. On the serial path the estimators call such ops on slices of at most that many
   elements, which torch runs inline; each element's value is the same however the tensor is
   split (checked on 4·10⁶ random values per dtype: torch's results do not depend on its thread
   count).

The server applies ``for_workers(settings.workers)`` at start-up (``service.server.serve``);
library users can call ``set_policy`` (``ThreadPolicy(budget=1)`` makes every kernel serial).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, replace

__all__ = [
    "TORCH_SERIAL_ELEMENTS",
    "ThreadPolicy",
    "apply",
    "available_cores",
    "for_workers",
    "free_cores",
    "kernel_threads",
    "own_runnable",
    "policy",
    "set_policy",
]


#: The most elements torch runs a transcendental elementwise op on without waking its pool.
TORCH_SERIAL_ELEMENTS = 2048


def available_cores() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ThreadPolicy:
    """How many threads one estimator kernel call may use."""

    budget: int  # the most threads one kernel call uses (1: always serial)
    # Below this many elements (B·T·F) a kernel runs serially. 2¹⁸ = 512×512.
    parallel_min_elements: int = 1 << 18
    watch_load: bool = True  # also cap by the cores idle right now (/proc/loadavg)

    def __post_init__(self) -> None:
        if self.budget < 1 or self.parallel_min_elements < 0:
            raise ValueError(
                f"ThreadPolicy: expected budget ≥ 1 and parallel_min_elements ≥ 0, got {self}"
            )


_policy = ThreadPolicy(budget=available_cores())
_lock = threading.Lock()


def policy() -> ThreadPolicy:
    """The policy in force (process-wide)."""
    return _policy


def set_policy(new: ThreadPolicy) -> ThreadPolicy:
    """Put ``new`` in force for every later kernel call; return the previous policy."""
    global _policy
    with _lock:
        previous, _policy = _policy, new
    return previous


def for_workers(workers: int, cores: int | None = None) -> ThreadPolicy:
    """The policy for ``workers`` threads that each may run a kernel at the same time."""
    cores = available_cores() if cores is None else cores
    return replace(_policy, budget=max(1, cores // max(1, workers)))


def apply(new: ThreadPolicy) -> ThreadPolicy:
    """``set_policy(new)`` and give torch's intra-op pool the same budget (a server's start-up:
    a worker runs either a forward pass or a kernel at a time, never both)."""
    import torch

    torch.set_num_threads(new.budget)
    return set_policy(new)


def _loadavg_reader() -> int | None:
    try:
        return os.open("/proc/loadavg", os.O_RDONLY)
    except (OSError, AttributeError):
        return None


_LOADAVG = _loadavg_reader()
_CORES = available_cores()


def own_runnable() -> int:
    """Threads of this process that are running or runnable now (the caller among them).

    They are not competition: numba's workers spin for a moment after a parallel region (and
    are the threads the next region uses), so counting them made every other large call on an
    idle 2-core machine run serially (GAE 1024×1024: 4.6 ms instead of 2.4 ms).
    """
    count = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 1  # not Linux: the caller
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # the thread ended meanwhile
        count += state == b"R"
    return count


def free_cores() -> int:
    """Cores with nothing runnable on them now but this process's threads (≥ 1).

    ``/proc/loadavg``'s fourth field is "runnable/total" tasks system-wide, the reader included;
    this process's own runnable threads (`own_runnable`) are taken off. Without it (not Linux)
    every core counts as free.
    """
    if _LOADAVG is None:
        return _CORES
    try:
        field = os.pread(_LOADAVG, 64, 0).split()[3]
        runnable = int(field.split(b"/")[0])
    except (OSError, IndexError, ValueError):
        return _CORES
    others = max(0, runnable - max(1, own_runnable()))
    return max(1, min(_CORES, _CORES - others))


def kernel_threads(n_rows: int, elements: int) -> int:
    """Threads for one kernel call over ``n_rows`` independent rows and ``elements`` values:
    1 means the serial build, in the calling thread."""
    current = _policy
    if n_rows < 2 or current.budget < 2 or elements < current.parallel_min_elements:
        return 1
    threads = min(current.budget, n_rows)
    if current.watch_load:
        threads = min(threads, free_cores())
    return threads
