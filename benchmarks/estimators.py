"""Benchmark: our GAE, TD(λ) and V-trace against TorchRL 0.14.1's loop and vectorised functions.

float32 ``[B, T, 1]`` trajectories with ~1% dones (half of them terminations), at 64×128,
256×256 and 1024×1024. Prints the median wall time of each implementation, its speed-up over
TorchRL's fastest implementation of the same estimator, and its peak memory.

Peak memory is the rise of the process's peak resident set size (``ru_maxrss``) caused by one
call, measured in a fresh child process per (implementation, size), after its inputs exist and one
tiny warm-up call (so compiled code and lazy initialisation are not counted). It
sees every allocation (torch, numpy, numba) but has page granularity and includes allocator
slack, so small sizes read as ~0; the inputs (five tensors) are reported for scale.

Usage: ``python benchmarks/estimators.py [--quick]`` (``--quick``: small sizes, few repeats).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from torchrl.objectives.value import functional as F

from service.estimators import gae, td_lambda, vtrace, warmup

GAMMA, LMBDA = 0.99, 0.95
Inputs = dict[str, torch.Tensor]


def make_inputs(batch: int, steps: int, seed: int = 0) -> Inputs:
    """Seeded float32 inputs: ~1% dones, half of them terminations."""
    rng = np.random.default_rng(seed)
    shape = (batch, steps, 1)

    def f32() -> torch.Tensor:
        return torch.from_numpy(rng.standard_normal(shape, dtype=np.float32))

    done = rng.random(shape) < 0.01
    terminated = done & (rng.random(shape) < 0.5)
    return {
        "v": f32(),
        "nv": f32(),
        "r": f32(),
        "d": torch.from_numpy(done),
        "k": torch.from_numpy(terminated),
        "lp": 0.3 * f32(),
        "lq": 0.3 * f32(),
    }


def implementations() -> dict[str, dict[str, Callable[[Inputs], object]]]:
    """estimator -> implementation name -> call. Names starting with 'torchrl' are references."""

    def std(x: Inputs) -> tuple[torch.Tensor, ...]:
        return x["v"], x["nv"], x["r"], x["d"], x["k"]

    return {
        "GAE": {
            "ours (numba)": lambda x: gae(GAMMA, LMBDA, *std(x)),
            "ours (numba, validate=False)": lambda x: gae(GAMMA, LMBDA, *std(x), validate=False),
            "ours (torch path)": lambda x: gae(GAMMA, LMBDA, *std(x), _backend="torch"),
            "torchrl loop": lambda x: F.generalized_advantage_estimate(GAMMA, LMBDA, *std(x)),
            "torchrl vec": lambda x: F.vec_generalized_advantage_estimate(GAMMA, LMBDA, *std(x)),
        },
        "TD(λ)": {
            "ours (numba)": lambda x: td_lambda(GAMMA, LMBDA, *std(x)),
            "ours (numba, validate=False)": lambda x: td_lambda(
                GAMMA, LMBDA, *std(x), validate=False
            ),
            "ours (torch path)": lambda x: td_lambda(GAMMA, LMBDA, *std(x), _backend="torch"),
            "torchrl loop": lambda x: F.td_lambda_return_estimate(GAMMA, LMBDA, *std(x)[1:]),
            "torchrl vec": lambda x: F.vec_td_lambda_return_estimate(GAMMA, LMBDA, *std(x)[1:]),
        },
        "V-trace": {
            "ours (numba)": lambda x: vtrace(GAMMA, x["lp"], x["lq"], *std(x)),
            "ours (numba, validate=False)": lambda x: vtrace(
                GAMMA, x["lp"], x["lq"], *std(x), validate=False
            ),
            "ours (torch path)": lambda x: vtrace(
                GAMMA, x["lp"], x["lq"], *std(x), _backend="torch"
            ),
            "torchrl loop": lambda x: F.vtrace_advantage_estimate(GAMMA, x["lp"], x["lq"], *std(x)),
        },
    }


def median_ms(fn: Callable[[], object], budget_s: float, max_reps: int) -> float:
    # Warm caches, lazy initialisation and the thread pools for a moment, for every
    # implementation alike, so the first one measured is not penalised.
    warm_until = time.perf_counter() + min(0.2, budget_s)
    fn()
    while time.perf_counter() < warm_until:
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < budget_s and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def _peak_child(estimator: str, impl: str, batch: int, steps: int, conn) -> None:
    warmup()
    fn = implementations()[estimator][impl]
    fn(make_inputs(4, 8))  # lazy initialisation (kernel code, torch dispatch) is not the call's
    x = make_inputs(batch, steps)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn(x)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    conn.send((after - before) * 1024)  # Linux reports KiB
    conn.close()


def peak_bytes(estimator: str, impl: str, batch: int, steps: int) -> int | None:
    # numba's OpenMP layer forbids fork() once used, so children come from a forkserver that
    # only imported the modules.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "numpy", "torchrl.objectives.value.functional"])
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_peak_child, args=(estimator, impl, batch, steps, child))
    proc.start()
    child.close()
    value = parent.recv() if parent.poll(600) else None
    proc.join()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--no-memory", action="store_true", help="skip the forked peak-RSS runs")
    args = parser.parse_args()
    sizes = [(64, 128), (256, 256)] if args.quick else [(64, 128), (256, 256), (1024, 1024)]
    budget, max_reps = (0.3, 20) if args.quick else (3.0, 200)
    warmup()  # compile once here so the children only load the on-disk cache

    impls = implementations()
    memory: dict[tuple[str, str, int, int], int] = {}
    if not args.no_memory:
        for batch, steps in sizes:
            for estimator, table in impls.items():
                for impl in table:
                    memory[estimator, impl, batch, steps] = peak_bytes(
                        estimator, impl, batch, steps
                    )

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; medians in ms")
    header = f"| {'estimator':8} | {'B×T':9} | {'implementation':29} | {'median ms':>9} | " \
             f"{'vs TorchRL best':>15} | {'peak MB':>8} |"  # fmt: skip
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for batch, steps in sizes:
        x = make_inputs(batch, steps)
        for estimator, table in impls.items():
            times = {
                name: median_ms(lambda f=f, x=x: f(x), budget, max_reps)
                for name, f in table.items()
            }
            best = min(t for name, t in times.items() if name.startswith("torchrl"))
            for name, ms in times.items():
                mem = memory.get((estimator, name, batch, steps))
                mem_s = f"{mem / 2**20:8.1f}" if mem is not None else f"{'n/a':>8}"
                print(
                    f"| {estimator:8} | {batch}×{steps:<5} | {name:29} | {ms:9.3f} | "
                    f"{best / ms:14.1f}× | {mem_s} |"
                )
        inputs_mb = 5 * batch * steps * 4 / 2**20
        outputs_mb = 2 * batch * steps * 4 / 2**20
        print(f"|  inputs {inputs_mb:.1f} MB, outputs {outputs_mb:.1f} MB at {batch}×{steps} |")


if __name__ == "__main__":
    main()
