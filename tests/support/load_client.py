"""One client process of the replicas proof (`test_replica_processes.py`), and the calls it
makes (the test rebuilds the same requests to recompute every answer in-process).

    python -m tests.support.load_client --targets IP:PORT,IP:PORT --seed 3 --out FILE \\
        --stop STOPFILE [--min-calls 30] [--max-calls 400] [--seconds 120]

Sends a bounded mixed load through one `AdvantageClient` over the target list (round_robin,
retries of UNAVAILABLE): ComputeAdvantage (GAE, V-trace with the server's actor, compact form,
read-your-writes with the highest version seen so far), ComputeLoss without an update,
GetParameters, GetModel and ListModels, paced (20–100 ms between calls) so that it spans the
test's run. It stops after `--max-calls`, or once STOPFILE exists and it made `--min-calls`, or
after `--seconds`. Every call's outcome is one JSON line in FILE: the
kind, the seed, the version the server reported, the numbers (or a digest of the parameters),
or the error. Imports numpy and the client only (no torch): it starts fast.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
from advantage_client import GAE, AdvantageClient, ClipPPO, VTrace

KINDS = ("gae", "vtrace", "compact", "ryw", "loss", "params", "model")
WEIGHTS = (4, 1, 1, 2, 1, 1, 1)


def make_batch(seed: int, batch: int = 2, steps: int = 8) -> dict[str, np.ndarray]:
    """Trajectories for the demo model (4-dim observations, 2 actions), episodes ending at random
    steps, observations chained within an episode."""
    g = np.random.default_rng(seed)
    chain = g.standard_normal((batch, steps + 1, 4)).astype(np.float32)
    observation, next_observation = chain[:, :-1].copy(), chain[:, 1:].copy()
    done = g.random((batch, steps)) < 0.15
    terminated = done & (g.random((batch, steps)) < 0.5)
    truncated = done & ~terminated
    next_observation[truncated] = g.standard_normal((int(truncated.sum()), 4)).astype(np.float32)
    return {
        "observation": observation,
        "next_observation": next_observation,
        "reward": g.standard_normal((batch, steps)).astype(np.float32),
        "done": done,
        "terminated": terminated,
        "action": g.integers(0, 2, (batch, steps)),
        "sample_log_prob": np.log(g.random((batch, steps)) * 0.9 + 0.05).astype(np.float32),
    }


def call_arguments(kind: str, seed: int) -> dict[str, Any]:
    """The keyword arguments of the client call of `kind` (for the compute kinds)."""
    data = make_batch(seed)
    trajectory = {k: data[k] for k in ("observation", "next_observation", "reward", "done")}
    trajectory["terminated"] = data["terminated"]
    if kind in ("gae", "ryw"):
        return {**trajectory, "estimator": GAE()}
    if kind == "compact":
        return {**trajectory, "estimator": GAE(gamma=0.9, lmbda=0.8), "form": "compact"}
    if kind == "vtrace":
        extra = {"action": data["action"], "sample_log_prob": data["sample_log_prob"]}
        return {**trajectory, **extra, "estimator": VTrace()}
    if kind == "loss":
        extra = {"action": data["action"], "sample_log_prob": data["sample_log_prob"]}
        return {**trajectory, **extra, "loss": ClipPPO()}
    raise ValueError(kind)


def parameter_digest(tensors: dict[str, np.ndarray]) -> str:
    """sha256 over the parameters' names and little-endian bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(tensors[name], dtype="<f4").tobytes())
    return digest.hexdigest()


def one_call(client: AdvantageClient, kind: str, seed: int, seen: int) -> dict[str, Any]:
    record: dict[str, Any] = {"kind": kind, "seed": seed}
    if kind in ("gae", "vtrace", "compact", "ryw"):
        extra = {"min_parameter_version": seen} if kind == "ryw" else {}
        if kind == "ryw":
            record["min"] = seen
        result = client.compute_advantage(**call_arguments(kind, seed), **extra)
        record["version"] = result.parameter_version
        record["out"] = {
            "advantage": result.advantage.tolist(),
            "value_target": result.value_target.tolist(),
            "state_value": result.state_value.tolist(),
            "next_state_value": result.next_state_value.tolist(),
        }
    elif kind == "loss":
        result = client.compute_loss(**call_arguments(kind, seed))
        record["version"] = result.parameter_version
        record["out"] = {"loss": result.loss, "metrics": dict(result.metrics)}
        record["updated"] = result.updated
    elif kind == "params":
        version, tensors = client.get_parameters()
        record["version"] = version
        record["digest"] = parameter_digest(tensors)
    else:
        record["version"] = client.get_model().parameter_version
        record["models"] = [model.name for model in client.list_models()]
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--targets", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--stop", type=Path, required=True)
    parser.add_argument("--min-calls", type=int, default=30)
    parser.add_argument("--max-calls", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    ends = time.monotonic() + args.seconds
    seen = 0  # the highest version this client has been answered with
    with (
        AdvantageClient(args.targets.split(","), timeout=30) as client,
        args.out.open("w") as out,
    ):
        for index in range(args.max_calls):
            if time.monotonic() > ends or (index >= args.min_calls and args.stop.exists()):
                break
            kind = rng.choices(KINDS, WEIGHTS)[0]
            seed = args.seed * 100_000 + index
            try:
                record = one_call(client, kind, seed, seen)
                seen = max(seen, record["version"])
            except Exception as error:  # a lost request: the test fails on it
                record = {"kind": kind, "seed": seed, "error": f"{type(error).__name__}: {error}"}
            out.write(json.dumps(record) + "\n")
            out.flush()
            time.sleep(rng.uniform(0.02, 0.1))  # paced: the load spans the whole run


if __name__ == "__main__":
    main()
