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

``--contended``: the speed table (ours against TorchRL's fastest of loop and vectorised, GAE,
TD(λ), V-trace, 1×8 to 1024×1024) in several fresh processes, first on the machine as it is, then
while N busy processes (N = cores, started first) compete for the cores; per size the median of
each run and the worst ratio of all runs. ``--warm``: GAE at 1024×1024 in one process, fresh and
again after a mixed workload (both dtypes, per-step coefficients, V-trace, refused inputs), with
and without ``out=``, each against TorchRL's loop measured in the same process.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

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


# -- contended: fresh processes, with and without N busy processes ----------------------------

CONTENDED_SIZES = [(1, 8), (8, 64), (64, 128), (256, 256), (1024, 1024)]


def contended_child(sizes: list[tuple[int, int]], budget_s: float) -> None:
    """One fresh process: ours and TorchRL's loop and vec per estimator and size, as JSON."""
    warmup()
    ours = {"GAE": "ours (numba)", "TD(λ)": "ours (numba)", "V-trace": "ours (numba)"}
    rows = []
    for batch, steps in sizes:
        x = make_inputs(batch, steps)
        for estimator, table in implementations().items():
            times = {}
            for name, f in table.items():
                if name != ours[estimator] and not name.startswith("torchrl"):
                    continue
                # vec pads every trajectory (O(T²) work, 400 MB at 1024×1024): there it is 10× or
                # more slower than TorchRL's loop in every run of the full table, so it cannot
                # be the fastest and is left out (seconds per call on a busy machine).
                if batch * steps >= 1 << 20 and "vec" in name:
                    continue
                reps = 2000
                times[name] = median_ms(lambda f=f, x=x: f(x), budget_s, reps)
            best = min(t for name, t in times.items() if name.startswith("torchrl"))
            rows.append(
                {"estimator": estimator, "size": f"{batch}×{steps}", "ours": times[ours[estimator]],
                 "torchrl_best": best}
            )  # fmt: skip
    print(json.dumps(rows))


def busy_processes(n: int) -> list[subprocess.Popen]:
    """``n`` processes spinning on a core each, started before any measurement. Each stops by
    itself when this process is gone (killed before its ``finally`` could stop them)."""
    spin = "import os\nparent = os.getppid()\nwhile os.getppid() == parent: pass"
    return [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(n)]


def contended(runs: int, quick: bool) -> None:
    sizes = CONTENDED_SIZES[:3] if quick else CONTENDED_SIZES
    budget = 0.2 if quick else 0.5
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    command = [sys.executable, __file__, "--child", json.dumps(sizes), str(budget)]
    results: dict[str, list[list[dict]]] = {}
    for condition, n_busy in (("as is", 0), (f"{cores} busy", cores or 1)):
        busy = busy_processes(n_busy)
        try:
            time.sleep(0.5 if n_busy else 0)  # the busy ones are running before we start
            with open("/proc/loadavg") as f:
                load = f.read().split()[:4]
            results[condition] = []
            for _ in range(runs):
                out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                results[condition].append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for p in busy:
                p.kill()
                p.wait()
        print(f"{condition}: {runs} fresh processes, load when started {' '.join(load)}")
    print(f"\ntorch {torch.__version__}, {cores} cores; medians in ms per fresh process; "
          "ratio = ours / TorchRL's fastest (loop or vec; loop only at 1024×1024) in the same "
          "process")  # fmt: skip
    header = "| estimator | B×T | condition | ours (ms, per run) | TorchRL best (ms, per run) | " \
             "ratio per run | worst ratio |"  # fmt: skip
    print(header)
    print("|---|---|---|---|---|---|---|")
    first = next(iter(results.values()))[0]
    for index, row in enumerate(first):
        for condition, runs_rows in results.items():
            per_run = [r[index] for r in runs_rows]
            ours = " ".join(f"{r['ours']:.3f}" for r in per_run)
            ref = " ".join(f"{r['torchrl_best']:.3f}" for r in per_run)
            ratios = [r["ours"] / r["torchrl_best"] for r in per_run]
            print(
                f"| {row['estimator']} | {row['size']} | {condition} | {ours} | {ref} | "
                f"{' '.join(f'{q:.3f}' for q in ratios)} | {max(ratios):.3f} |"
            )


# -- steady speed: fresh against after a mixed workload ------------------------------------------


def mixed_workload() -> None:
    """What a process may do before: both dtypes, per-step coefficients, V-trace, refusals,
    and tensors of many sizes allocated and freed."""
    from service.errors import ArgumentError

    for batch, steps in ((3, 50), (64, 128), (512, 300), (1024, 1024), (2048, 700)):
        x = make_inputs(batch, steps, seed=batch)
        x64 = {k: (v.double() if v.is_floating_point() else v) for k, v in x.items()}
        gamma = torch.full(x["v"].shape, GAMMA, dtype=torch.float64)
        gae(GAMMA, LMBDA, x64["v"], x64["nv"], x64["r"], x["d"], x["k"])
        td_lambda(gamma, LMBDA, x64["v"], x64["nv"], x64["r"], x["d"], x["k"])
        vtrace(GAMMA, x["lp"], x["lq"], x["v"], x["nv"], x["r"], x["d"], x["k"])
        bad = x["v"].clone()
        bad[0, 0, 0] = float("nan")
        with contextlib.suppress(ArgumentError):
            gae(GAMMA, LMBDA, bad, x["nv"], x["r"], x["d"], x["k"])
        _ = [torch.empty(int(n)) for n in np.random.default_rng(batch).integers(1, 3 << 20, 40)]


def warm_child(budget_s: float) -> None:
    """One fresh process: the rows of ``warm``'s table for its allocator setting, as JSON."""
    warmup()
    x = make_inputs(1024, 1024)
    args = (x["v"], x["nv"], x["r"], x["d"], x["k"])
    out = (torch.empty_like(x["v"]), torch.empty_like(x["v"]))
    calls = {
        "ours": lambda: gae(GAMMA, LMBDA, *args),
        "ours, out=": lambda: gae(GAMMA, LMBDA, *args, out=out),
        "torchrl loop": lambda: F.generalized_advantage_estimate(GAMMA, LMBDA, *args),
    }
    rows = {}
    for phase in ("fresh", "after mixed workload"):
        if phase != "fresh":
            mixed_workload()
        rows[phase] = {name: median_ms(fn, budget_s, 200) for name, fn in calls.items()}
    print(json.dumps(rows))


def warm(budget_s: float) -> None:
    command = [sys.executable, __file__, "--warm-child", str(budget_s)]
    settings = {
        "library setting (default)": {},
        "ADVANTAGE_ESTIMATORS_MALLOC=default": {"ADVANTAGE_ESTIMATORS_MALLOC": "default"},
    }
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:4])
    print(f"GAE 1024×1024 float32, one fresh process per allocator setting; medians in ms; "
          f"load at start {load}")  # fmt: skip
    print("| allocator | phase | ours | ours, out= | TorchRL loop | ours / TorchRL | "
          "out= / TorchRL |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    summary = []
    for label, env in settings.items():
        result = subprocess.run(
            command, capture_output=True, text=True, check=True, env=os.environ | env
        )
        rows = json.loads(result.stdout.strip().splitlines()[-1])
        for phase, t in rows.items():
            ref = t["torchrl loop"]
            print(
                f"| {label} | {phase} | {t['ours']:.3f} | {t['ours, out=']:.3f} | {ref:.2f} | "
                f"{t['ours'] / ref:.3f} | {t['ours, out='] / ref:.3f} |"
            )
        after, fresh = rows["after mixed workload"], rows["fresh"]
        summary.append(
            f"{label}: after / fresh ours {after['ours'] / fresh['ours']:.2f}×, "
            f"out= {after['ours, out='] / fresh['ours, out=']:.2f}×"
        )
    print("\n".join(summary))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        contended_child([tuple(s) for s in json.loads(sys.argv[2])], float(sys.argv[3]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--warm-child":
        warm_child(float(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--no-memory", action="store_true", help="skip the forked peak-RSS runs")
    parser.add_argument(
        "--contended", action="store_true", help="fresh processes, quiet and with N busy ones"
    )
    parser.add_argument("--runs", type=int, default=3, help="--contended: processes per condition")
    parser.add_argument("--warm", action="store_true", help="fresh against after a mixed workload")
    args = parser.parse_args()
    if args.contended:
        contended(args.runs, args.quick)
        return
    if args.warm:
        warm(0.3 if args.quick else 1.5)
        return
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
