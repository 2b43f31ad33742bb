"""Replicas benchmark: throughput of small ComputeAdvantage calls with 1, 2 and 3 replica
processes, and the propagation delay from a learner commit to every replica serving it.

    .venv/bin/python benchmarks/replicas.py            # ~4 min on 2 cores
    .venv/bin/python benchmarks/replicas.py --quick    # smoke run (~40 s)

Every server is a separate `advantage-service serve` process on loopback with the built-in demo
model; replicas follow the learner (`--follow`). Figures and their reading are in the README.

Throughput: `--load-processes` load processes (default 2), each keeping `--concurrency` calls in
flight on one round_robin channel over the replicas (the clients' service config), send a
pre-serialised small request (B = 4, T = 32, GAE) and do not decode the answer, so that as little
CPU as possible goes to the load itself. Calls are counted over a window after a warm-up; the
CPU time of the servers and of the load processes over the window is read from /proc (Linux),
which shows where the machine's cores went ("other cores": other users of the machine). One
learner and three replicas run throughout; the load goes to the first 1, 2 or 3 replicas (the
others idle), in `--rounds` interleaved rounds; the table shows, per size, the median round and
every round's calls/s.

Propagation: the learner commits a new version (SetParameters of the whole demo model, ~20 KB)
every `--interval` seconds; this process watches the learner and every replica with WatchModels
(a replica announces a version once it serves it). For each commit: the time from the learner's
announcement to the last replica's, and from the start of the write call to the last replica's.
Measured idle and under the throughput load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "clients" / "python")]

import grpc  # noqa: E402
from advantage_client.client import DEFAULT_SERVICE_CONFIG, channel_options  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from service.pb.advantage.v1 import advantage_pb2 as pb  # noqa: E402
from service.pb.advantage.v1 import advantage_pb2_grpc as pb_grpc  # noqa: E402

METHOD = "/advantage.v1.AdvantageService/ComputeAdvantage"
TICKS = os.sysconf("SC_CLK_TCK")


# -- processes ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU ticks of the whole machine so far (/proc/stat)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat, Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Server:
    """An `advantage-service serve` process."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        command = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port",
                   str(self.port), "--rest-port", "0", "--grace-seconds", "1", *args]  # fmt: skip
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=self.log, stderr=self.log)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_serving(self, timeout: float = 180.0) -> Server:
        channel = grpc.insecure_channel(self.target)
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.log.seek(0)
                    raise RuntimeError("server did not start:\n" + self.log.read().decode()[-3000:])
                with contextlib.suppress(grpc.RpcError):
                    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return self
                time.sleep(0.05)
        finally:
            channel.close()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(15)
        self.log.close()


@contextlib.contextmanager
def cluster(replicas: int) -> Iterator[tuple[Server, list[Server]]]:
    """A learner and `replicas` replicas of it, all SERVING."""
    learner = Server()
    followers: list[Server] = []
    try:
        learner.wait_serving()
        followers = [Server("--follow", learner.target) for _ in range(replicas)]
        for follower in followers:
            follower.wait_serving()
        yield learner, followers
    finally:
        for server in (*followers, learner):
            server.stop()


# -- the load -------------------------------------------------------------------------------------


def small_request() -> bytes:
    """A serialised ComputeAdvantageRequest: B = 4, T = 32 demo observations, GAE."""
    import numpy as np

    g = np.random.default_rng(0)
    batch, steps = 4, 32
    chain = g.standard_normal((batch, steps + 1, 4)).astype("<f4")

    def tensor(array: Any, dtype: int) -> pb.Tensor:
        return pb.Tensor(dtype=dtype, shape=list(array.shape), raw_data=array.tobytes())

    trajectory = pb.Trajectory(
        reward=tensor(g.standard_normal((batch, steps)).astype("<f4"), pb.DTYPE_FLOAT32),
        done=tensor(np.zeros((batch, steps), dtype=bool), pb.DTYPE_BOOL),
        form=pb.TRAJECTORY_FORM_COMPACT,
    )
    trajectory.observation["observation"].CopyFrom(tensor(chain, pb.DTYPE_FLOAT32))
    trajectory.next_observation["observation"].CopyFrom(
        tensor(np.zeros((0, 4), dtype="<f4"), pb.DTYPE_FLOAT32)
    )
    return pb.ComputeAdvantageRequest(trajectory=trajectory, gae=pb.GAE()).SerializeToString()


async def _load(targets: list[str], concurrency: int, warmup: float, seconds: float) -> dict:
    options = channel_options(64, [], DEFAULT_SERVICE_CONFIG)
    target = f"ipv4:///{','.join(targets)}"
    request = small_request()
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        call = channel.unary_unary(METHOD)  # bytes in, bytes out: nothing decoded
        await channel.channel_ready()
        started = time.perf_counter()
        window = (started + warmup, started + warmup + seconds)
        counted = errors = 0
        cpu: list[float] = []

        async def worker() -> None:
            nonlocal counted, errors
            while (now := time.perf_counter()) < window[1]:
                try:
                    await call(request, timeout=30)
                except grpc.RpcError:
                    errors += 1
                    continue
                if window[0] <= now:
                    counted += 1

        async def clock() -> None:
            await asyncio.sleep(warmup)
            cpu.append(time.process_time())
            await asyncio.sleep(seconds)
            cpu.append(time.process_time())

        await asyncio.gather(clock(), *(worker() for _ in range(concurrency)))
    return {"calls": counted, "errors": errors, "cpu": cpu[1] - cpu[0]}


def load_worker(args: argparse.Namespace) -> None:
    """The load process (`--load-worker`): prints one JSON line."""
    targets = args.targets.split(",")
    result = asyncio.run(_load(targets, args.concurrency, args.warmup, args.seconds))
    print(json.dumps(result), flush=True)


def throughput(followers: list[Server], replicas: int, args: argparse.Namespace) -> dict:
    """Calls/s of `args.load_processes` load processes over the first `replicas` replicas (the
    others idle), and where the machine's CPU went meanwhile."""
    serving = followers[:replicas]
    targets = ",".join(f.target for f in serving)
    command = [sys.executable, __file__, "--load-worker", "--targets", targets,
               "--concurrency", str(args.concurrency), "--warmup", str(args.warmup),
               "--seconds", str(args.seconds)]  # fmt: skip
    loads = [
        subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(args.load_processes)
    ]
    time.sleep(args.warmup + 1.5)  # the loads start (~1 s) and warm up
    before, busy_before = [cpu_seconds(f.process.pid) for f in serving], machine_busy()
    time.sleep(args.seconds * 0.8)  # inside the loads' window
    after, busy_after = [cpu_seconds(f.process.pid) for f in serving], machine_busy()
    results = [json.loads(load.communicate(timeout=120)[0]) for load in loads]
    elapsed = args.seconds * 0.8
    server_cores = (sum(after) - sum(before)) / elapsed
    load_cores = sum(r["cpu"] for r in results) / args.seconds
    busy = (busy_after[0] - busy_before[0]) / (busy_after[1] - busy_before[1])
    calls = sum(r["calls"] for r in results) / args.seconds
    return {
        "replicas": replicas,
        "calls/s": calls,
        "errors": sum(r["errors"] for r in results),
        "server cores": server_cores,
        "load cores": load_cores,
        # Anything else on the machine (other users' processes) in the same window.
        "other cores": max(0.0, busy * (os.cpu_count() or 1) - server_cores - load_cores),
        "calls per server core-s": calls / max(server_cores, 1e-9),
    }


def throughputs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """`args.rounds` rounds of 1, 2 and 3 loaded replicas, interleaved (other users of the
    machine come and go: each round sees them alike); per size, the median round."""
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: [], 3: []}
    with cluster(3) as (_, followers):
        for _ in range(args.rounds):
            for replicas in runs:
                runs[replicas].append(throughput(followers, replicas, args))
    rows = []
    for results in runs.values():
        row = dict(sorted(results, key=lambda row: row["calls/s"])[len(results) // 2])
        row["calls/s (all rounds)"] = " / ".join(f"{r['calls/s']:.0f}" for r in results)
        rows.append(row)
    return rows


# -- propagation ----------------------------------------------------------------------------------


async def _propagation(
    learner: str, replicas: list[str], commits: int, interval: float
) -> list[tuple[float, float]]:
    """(learner's announcement → last replica's, write start → last replica's), seconds."""
    channels = [grpc.aio.insecure_channel(t) for t in (learner, *replicas)]
    seen: list[dict[int, float]] = [{} for _ in channels]
    changed = asyncio.Event()

    async def watch(index: int) -> None:
        stub = pb_grpc.AdvantageServiceStub(channels[index])
        async for message in stub.WatchModels(pb.WatchModelsRequest()):
            seen[index].setdefault(message.parameter_version, time.perf_counter())
            changed.set()

    watchers = [asyncio.create_task(watch(i)) for i in range(len(channels))]
    try:
        api = pb_grpc.AdvantageServiceStub(channels[0])
        chunks = [chunk async for chunk in api.GetParameters(pb.GetParametersRequest())]
        for chunk in chunks:
            chunk.ClearField("parameter_version")  # no compare-and-set
        delays = []
        for _ in range(commits):
            started = time.perf_counter()
            version = (await api.SetParameters(iter(chunks), timeout=30)).parameter_version
            deadline = time.monotonic() + 30
            while not all(version in versions for versions in seen):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"version {version} did not reach every replica in 30 s")
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), 1.0)
            last = max(versions[version] for versions in seen[1:])
            delays.append((last - seen[0][version], last - started))
            await asyncio.sleep(interval)
        return delays
    finally:
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        for channel in channels:
            await channel.close()


def propagation(replicas: int, args: argparse.Namespace, loaded: bool) -> dict[str, Any]:
    with cluster(replicas) as (learner, followers):
        loads = []
        if loaded:
            targets = ",".join(f.target for f in followers)
            command = [sys.executable, __file__, "--load-worker", "--targets", targets,
                       "--concurrency", str(args.concurrency), "--warmup", "0",
                       "--seconds", "600"]  # fmt: skip
            loads = [
                subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
                for _ in range(args.load_processes)
            ]
            time.sleep(2.0)
        try:
            delays = asyncio.run(
                _propagation(learner.target, [f.target for f in followers], args.commits, 0.02)
            )
        finally:
            for load in loads:
                load.kill()
                load.wait(30)
    from_commit = sorted(d[0] * 1e3 for d in delays)
    from_write = sorted(d[1] * 1e3 for d in delays)

    def p99(values: list[float]) -> float:
        return values[min(len(values) - 1, round(0.99 * (len(values) - 1)))]

    return {
        "replicas": replicas,
        "load": "yes" if loaded else "idle",
        "commits": len(delays),
        "commit→all median ms": statistics.median(from_commit),
        "commit→all p99 ms": p99(from_commit),
        "write call→all median ms": statistics.median(from_write),
        "write call→all p99 ms": p99(from_write),
    }


# -- output ---------------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]]) -> str:
    columns = list(rows[0])

    def cell(value: Any) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows, few commits")
    parser.add_argument("--load-processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight per load")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=8.0, help="measurement window")
    parser.add_argument("--commits", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5, help="throughput runs per size")
    # The load process's own flags.
    parser.add_argument("--load-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--targets", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_worker:
        load_worker(args)
        return
    if args.quick:
        args.warmup, args.seconds, args.commits, args.rounds = 1.0, 3.0, 40, 1
    print(f"{os.cpu_count()} cores; {args.load_processes} load processes × "
          f"{args.concurrency} calls in flight, B×T = 4×32 GAE, demo model\n")  # fmt: skip
    rows = throughputs(args)
    base = rows[0]["calls/s"]
    for row in rows:
        row["× 1 replica"] = row["calls/s"] / base
    print("Throughput\n")
    print(table(rows))
    print("\nPropagation (learner commit → every replica serving it)\n")
    print(table([propagation(3, args, loaded=False), propagation(3, args, loaded=True)]))


if __name__ == "__main__":
    main()
