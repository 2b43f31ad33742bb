"""Service benchmark: end-to-end ComputeAdvantage vs in-process TorchRL, concurrency, wire bytes.

    .venv/bin/python benchmarks/service.py            # full run (~3–4 min on 2 cores)
    .venv/bin/python benchmarks/service.py --quick    # smoke run (~1 min)
    .venv/bin/python benchmarks/service.py --profile  # also cProfile the server's handler
    .venv/bin/python benchmarks/service.py --small    # only the small-call parts (4, 5)

The server runs in a separate process (`python -m service.cli serve`) with a model folder written
by `service.models.export.export_model`: an MLP value network 64 → 256 → 256 → 1 (tanh). The
client is `advantage_client` (blocking for part 1, asyncio for part 2). Part 4 drives the server
and a trivial grpc.aio echo server (a separate process answering each request with its own bytes)
with the same pre-serialised B=2, T=32 request bytes from one load generator, so the ratio is the
server's fixed cost against the transport's; beside them, the bare handler (the service's handler
called straight from a grpc.aio method, nothing around it) shows the floor of any servicer in
Python on grpc.aio; part 5 compares batching on and off with that load
generator at several concurrencies. Figures and their reading are in the README.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import math
import os
import pstats
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Part 1 measures TorchRL with glibc's default allocator first, then tuned: keep importing
# service.estimators from applying the setting (the server process applies it itself).
os.environ["ADVANTAGE_ESTIMATORS_MALLOC"] = "default"

from service.estimators.memory import tune_allocator  # noqa: E402
from service.models.export import export_model  # noqa: E402
from service.models.manifest import InputSpec  # noqa: E402

OBS = 64
GAMMA, LMBDA = 0.99, 0.95
MODEL = "mlp"


def value_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(OBS, 256), nn.Tanh(), nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 1)
    ).eval()


def trajectories(batch: int, steps: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """[B, T] steps with ~1 % episode ends (half terminated); chained observations."""
    g = torch.Generator().manual_seed(seed)
    chain = torch.randn(batch, steps + 1, OBS, generator=g)
    observation, next_observation = chain[:, :-1], chain[:, 1:].clone()
    done = torch.rand(batch, steps, generator=g) < 0.01
    terminated = done & (torch.rand(batch, steps, generator=g) < 0.5)
    truncated = done & ~terminated
    next_observation[truncated] = torch.randn(int(truncated.sum()), OBS, generator=g)
    return {
        "observation": observation.contiguous(),
        "next_observation": next_observation,
        "compact_observation": chain,  # [B, T + 1, obs]: the compact form's observations
        "compact_next": next_observation[truncated].contiguous(),  # [K, obs]
        "reward": torch.randn(batch, steps, generator=g),
        "done": done,
        "terminated": terminated,
    }


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


# -- the server process ----------------------------------------------------------------------

#: target → pid of the server process answering it (ours or the echo server).
PIDS: dict[str, int] = {}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def server_process(repository: Path, *extra: str) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "service.cli", "serve", "--model-repository", str(repository)]
    command += ["--port", str(port), "--host", "127.0.0.1", "--rest-port", "0", *extra]
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in `finally`
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    target = f"127.0.0.1:{port}"
    PIDS[target] = process.pid
    try:
        channel = grpc.insecure_channel(target)
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError("server did not start:\n" + log.read().decode()[-3000:])
            with contextlib.suppress(grpc.RpcError):
                reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            time.sleep(0.2)
        channel.close()
        yield target
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


# -- 1. end to end -----------------------------------------------------------------------------


def torchrl_estimators(net: nn.Module) -> dict[str, Callable[[object], object]]:
    from tensordict.nn import TensorDictModule
    from torchrl.objectives.value import GAE

    module = TensorDictModule(net, in_keys=["observation"], out_keys=["state_value"])
    default = GAE(gamma=GAMMA, lmbda=LMBDA, value_network=module)
    shifted = GAE(gamma=GAMMA, lmbda=LMBDA, value_network=module, shifted=True)
    return {"default": default, "shifted": shifted}


def tensordict(data: dict[str, torch.Tensor]) -> object:
    from tensordict import TensorDict

    batch = list(data["reward"].shape)
    return TensorDict(
        {
            "observation": data["observation"],
            "next": {
                "observation": data["next_observation"],
                "reward": data["reward"].unsqueeze(-1),
                "done": data["done"].unsqueeze(-1),
                "terminated": data["terminated"].unsqueeze(-1),
            },
        },
        batch_size=batch,
        names=[None] * (len(batch) - 1) + ["time"],
    )


def remote_call(client: object, data: dict[str, torch.Tensor], form: str) -> Callable[[], object]:
    from advantage_client import GAE

    common = {
        "reward": data["reward"],
        "done": data["done"],
        "terminated": data["terminated"],
        "model": MODEL,
        "estimator": GAE(gamma=GAMMA, lmbda=LMBDA),
    }
    if form == "full":
        observations = {
            "observation": data["observation"],
            "next_observation": data["next_observation"],
        }
    else:  # already in the compact layout, as TorchRL's compact storage keeps it
        observations = {
            "observation": data["compact_observation"],
            "next_observation": data["compact_next"],
        }
    return lambda: client.compute_advantage(**common, **observations, form=form)  # type: ignore[attr-defined]


def torchrl_times(net: nn.Module, shapes: list[tuple[int, int]], repeats: int, tag: str) -> dict:
    """Median ms of TorchRL's GAE (default and shifted=True) and of one forward pass, per shape."""
    estimators = torchrl_estimators(net)
    out = {}
    for batch, steps in shapes:
        data = trajectories(batch, steps)
        td = tensordict(data)
        row = {}
        for mode, estimator in estimators.items():
            row[f"torchrl_{mode}{tag}"] = median_ms(lambda e=estimator, t=td: e(t.clone()), repeats)
        with torch.inference_mode():
            rows = torch.cat([data["observation"], data["next_observation"]], 1)
            row[f"one_forward{tag}"] = median_ms(lambda x=rows: net(x), repeats)
        out[(batch, steps)] = row
    return out


def end_to_end(target: str, net: nn.Module, shapes: list[tuple[int, int]], repeats: int) -> list:
    from advantage_client import AdvantageClient

    rows = []
    default = torchrl_estimators(net)["default"]
    with AdvantageClient(target, timeout=120) as client:
        for batch, steps in shapes:
            data = trajectories(batch, steps)
            reference = default(tensordict(data))["advantage"].squeeze(-1)
            row: dict[str, object] = {"shape": f"{batch}x{steps}"}
            for form in ("full", "compact"):
                call = remote_call(client, data, form)
                result = call()
                error = float((torch.as_tensor(result.advantage) - reference).abs().max())
                row[f"remote_{form}"] = median_ms(call, repeats)
                row[f"maxdiff_{form}"] = error
            rows.append(row)
    return rows


# -- 2. concurrency ----------------------------------------------------------------------------


async def _clients(target: str, clients: int, per_client: int, steps: int) -> dict[str, float]:
    from advantage_client.aio import AsyncAdvantageClient

    pool = [trajectories(b, steps, seed=b) for b in (1, 2, 3, 4)]
    latencies: list[float] = []
    async with AsyncAdvantageClient(target, timeout=120) as client:

        async def one(index: int) -> None:
            rng = random.Random(index)
            for _ in range(per_client):
                data = pool[rng.randrange(4)]
                start = time.perf_counter()
                await client.compute_advantage(
                    reward=data["reward"],
                    done=data["done"],
                    terminated=data["terminated"],
                    observation=data["observation"],
                    next_observation=data["next_observation"],
                    model=MODEL,
                )
                latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(one(i) for i in range(clients)))  # warm-up round
        latencies.clear()
        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(clients)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": len(latencies),
        "throughput": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1e3,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3,
    }


def concurrency(target: str, clients: int, per_client: int) -> dict[str, float]:
    return asyncio.run(_clients(target, clients, per_client, steps=32))


# -- 4./5. small calls against a gRPC echo server, batching on and off ----------------------------

ECHO_METHOD = "/bench.Echo/Echo"
ADVANTAGE_METHOD = "/advantage.v1.AdvantageService/ComputeAdvantage"
PHASES = ("decode", "network", "estimator", "encode")  # the response's timing fields
OURS, BARE, ECHO = "advantage-service", "bare handler on grpc.aio", "grpc.aio echo"


def echo_server(port: int, repository: Path | None = None) -> None:
    """A trivial grpc.aio server answering every call with the request's own bytes; with
    `repository`, the bare handler instead: it parses each request, runs the service's
    ComputeAdvantage handler on it inline and serialises the answer, with nothing around it (no
    admission, metrics, deadline or error mapping): the floor of any servicer on grpc.aio."""

    respond: Callable[[bytes], bytes] = lambda request: request  # noqa: E731
    if repository is not None:
        from service.api.handlers import compute_advantage_handler
        from service.models.loading import load_repository
        from service.models.registry import ModelRegistry
        from service.pb.advantage.v1 import advantage_pb2 as pb
        from service.runtime import Runtime

        torch.set_num_threads(1)  # as the server runs it: cores // workers
        runtime = Runtime(ModelRegistry(load_repository(repository, torch.device("cpu"))))
        parse = pb.ComputeAdvantageRequest.FromString

        def respond(request: bytes) -> bytes:
            return compute_advantage_handler(runtime, parse(request)).SerializeToString()

        respond(small_request_bytes())  # the network's first call, before "ready"

    async def serve() -> None:
        async def echo(request: bytes, context: object) -> bytes:
            return respond(request)

        handler = grpc.method_handlers_generic_handler(
            "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
        )
        server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", 64 << 20),
                ("grpc.max_send_message_length", 64 << 20),
            ]
        )
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        print("ready", flush=True)
        await server.wait_for_termination()

    asyncio.run(serve())


@contextlib.contextmanager
def echo_process(repository: Path | None = None) -> Iterator[str]:
    """The echo server in a process of its own; with `repository`, the bare handler."""
    port = free_port()
    command = [sys.executable, str(Path(__file__).resolve()), "--echo-server", str(port)]
    if repository is not None:
        command += ["--bare-handler", str(repository)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        PIDS[f"127.0.0.1:{port}"] = process.pid
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(30)


def small_request_bytes(
    batch: int = 2, steps: int = 32, form: str = "auto", values: bool = False
) -> bytes:
    """A serialised ComputeAdvantage request; `values`: the client sends V(s) and V(s') (no
    observations), so the server runs no network: only its fixed per-call work is left."""
    from advantage_client._request import prepare

    data = trajectories(batch, steps)
    inputs = (
        {"state_value": torch.randn(batch, steps), "next_state_value": torch.randn(batch, steps)}
        if values
        else {"observation": data["observation"], "next_observation": data["next_observation"]}
    )
    request = prepare(
        model=MODEL,
        form=form,
        estimator=None,
        reward=data["reward"],
        done=data["done"],
        terminated=data["terminated"],
        **inputs,
    ).request
    return request.SerializeToString()


async def _raw_load(
    target: str, method: str, payload: bytes, clients: int, per_client: int
) -> dict[str, float]:
    """`clients` concurrent callers each sending `payload` `per_client` times (after a warm-up
    round); throughput and latency percentiles."""
    latencies: list[float] = []
    options = [("grpc.max_receive_message_length", 64 << 20),
               ("grpc.max_send_message_length", 64 << 20)]  # fmt: skip
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        call = channel.unary_unary(method)  # bytes in, bytes out

        async def one() -> None:
            for _ in range(per_client):
                start = time.perf_counter()
                await call(payload, timeout=120)
                latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(one() for _ in range(clients)))  # warm-up round
        latencies.clear()
        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": len(latencies),
        "calls_per_s": len(latencies) / elapsed,
        "MB_per_s": len(latencies) * len(payload) / elapsed / 1e6,
        "p50_ms": latencies[len(latencies) // 2] * 1e3,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3,
    }


def raw_load(target: str, method: str, payload: bytes, clients: int, per_client: int) -> dict:
    """`_raw_load`, plus the server process's CPU time per call (warm-up round included)."""
    pid = PIDS.get(target)
    before = cpu_seconds(pid) if pid else math.nan
    result = asyncio.run(_raw_load(target, method, payload, clients, per_client))
    used = cpu_seconds(pid) - before if pid else math.nan
    result["server_cpu_ms"] = used / (2 * clients * per_client) * 1e3
    return result


def small_calls(repository: Path, clients: int, per_client: int, rounds: int) -> list[dict]:
    """Ours (with observations: one value-network pass; with client values: no network), the
    bare handler and the echo server on each request's bytes, interleaved `rounds` times (the
    order rotating); the median round of each, and each round's ratio against the echo round
    next to it."""
    payloads = {"observations": small_request_bytes(), "values": small_request_bytes(values=True)}
    runs: dict[tuple[str, str], list[dict]] = {}
    with (
        server_process(repository) as target,
        echo_process(repository) as bare_target,
        echo_process() as echo_target,
    ):
        servers = [(OURS, target, ADVANTAGE_METHOD), (BARE, bare_target, ECHO_METHOD),
                   (ECHO, echo_target, ECHO_METHOD)]  # fmt: skip
        for round_ in range(rounds):
            for request, payload in payloads.items():
                shift = round_ % len(servers)
                for server, where, method in servers[shift:] + servers[:shift]:
                    result = raw_load(where, method, payload, clients, per_client)
                    runs.setdefault((request, server), []).append(result)

    rows = []
    for request, payload in payloads.items():
        echo = runs[request, ECHO]
        medians = {
            server: sorted(runs[request, server], key=lambda r: r["calls_per_s"])[rounds // 2]
            for server in (OURS, BARE, ECHO)
        }
        for server, median in medians.items():
            per_round = " ".join(
                f"{a['calls_per_s'] / b['calls_per_s']:.2f}"
                for a, b in zip(runs[request, server], echo, strict=True)
            )
            rows.append(
                {"request": request, "server": server, "bytes": len(payload)}
                | median
                | {
                    "vs_echo": median["calls_per_s"] / medians[ECHO]["calls_per_s"],
                    "vs_echo per round": per_round if server != ECHO else "",
                }
            )
    return rows


def handler_cpu(repository: Path, repeats: int = 2000) -> list[dict]:
    """The ComputeAdvantage handler in this process on the part-4 requests: CPU ms per call
    (thread time, the fastest of 10 blocks: least disturbed by other processes), with the
    response's own phase timings, and the value network alone on the same rows (eager)."""
    from service.api.handlers import compute_advantage_handler
    from service.models.loading import load_repository
    from service.models.registry import ModelRegistry
    from service.pb.advantage.v1 import advantage_pb2 as pb
    from service.runtime import Runtime

    torch.set_num_threads(1)  # as the server runs it: cores // workers
    runtime = Runtime(ModelRegistry(load_repository(repository, torch.device("cpu"))))
    rows = []
    for name, values in (("observations", False), ("values", True)):
        request = pb.ComputeAdvantageRequest.FromString(small_request_bytes(values=values))
        for _ in range(50):
            response = compute_advantage_handler(runtime, request)
        blocks = []
        for _ in range(10):
            start = time.thread_time()
            for _ in range(repeats // 10):
                response = compute_advantage_handler(runtime, request)
            blocks.append((time.thread_time() - start) / (repeats // 10) * 1e3)
        timing = response.timing
        phases = {f"{phase}_ms": getattr(timing, f"{phase}_ms") for phase in PHASES}
        rows.append({"request": name, "handler_cpu_ms": min(blocks)} | phases)
    net, x = value_net(), torch.randn(2 * 33, OBS)  # compact form: B·(T + 1) rows
    with torch.inference_mode():
        forward = min(median_ms(lambda: net(x), 200) for _ in range(5))
    rows.append({"request": "value network alone (eager, 66 rows)", "handler_cpu_ms": forward})
    return rows


def wire_throughput(repository: Path, rounds: int) -> list[dict]:
    """MB/s of full-form requests of about 4 MB and 32 MB (2 callers × 3 calls): ours, computing,
    against the echo server, which only moves the bytes (the transport's ceiling)."""
    rows = []
    with server_process(repository) as target, echo_process() as echo_target:
        for batch, steps in ((64, 128), (256, 256)):
            payload = small_request_bytes(batch, steps, form="full")
            runs: dict[str, list[dict]] = {"ours": [], "echo": []}
            for _ in range(rounds):
                runs["ours"].append(raw_load(target, ADVANTAGE_METHOD, payload, 2, 3))
                runs["echo"].append(raw_load(echo_target, ECHO_METHOD, payload, 2, 3))
            medians = {name: sorted(r, key=lambda x: x["MB_per_s"])[len(r) // 2]
                       for name, r in runs.items()}  # fmt: skip
            rows.append(
                {
                    "shape": f"{batch}x{steps}",
                    "request_MB": len(payload) / 1e6,
                    "ours_MB_per_s": medians["ours"]["MB_per_s"],
                    "echo_MB_per_s": medians["echo"]["MB_per_s"],
                    "ours/echo": medians["ours"]["MB_per_s"] / medians["echo"]["MB_per_s"],
                }
            )
    return rows


def batching_on_off(
    repository: Path, concurrencies: list[int], per_client: int, rounds: int
) -> list[dict]:
    """Throughput with batching off and on (delay 0) at each concurrency, rounds interleaved."""
    payload = small_request_bytes()
    settings = {"off": ["--no-batching"], "on": ["--batching", "--max-queue-delay-us", "0"]}
    rest_ports = {name: free_port() for name in settings}  # for /metrics
    results: dict[tuple[str, int], list[dict]] = {}
    with contextlib.ExitStack() as stack:
        targets = {
            name: stack.enter_context(
                server_process(repository, *extra, "--rest-port", str(rest_ports[name]))
            )
            for name, extra in settings.items()
        }
        for round_ in range(rounds):
            for clients in concurrencies:
                # Alternate which server goes first, so that neither always runs second.
                order = list(targets.items())[:: 1 if round_ % 2 == 0 else -1]
                for name, target in order:
                    result = raw_load(target, ADVANTAGE_METHOD, payload, clients, per_client)
                    results.setdefault((name, clients), []).append(result)
        ran_on = {name: small_requests_ran_on(port) for name, port in rest_ports.items()}
    rows = []
    for clients in concurrencies:
        row: dict[str, object] = {"clients": clients}
        for name in settings:
            runs = sorted(results[name, clients], key=lambda r: r["calls_per_s"])
            median = runs[len(runs) // 2]
            row[f"{name}_calls_per_s"] = median["calls_per_s"]
            row[f"{name}_p99_ms"] = median["p99_ms"]
            row["on/off per round"] = " ".join(
                f"{on['calls_per_s'] / off['calls_per_s']:.2f}"
                for on, off in zip(results["on", clients], results["off", clients], strict=True)
            )
        row["on/off"] = row["on_calls_per_s"] / row["off_calls_per_s"]  # type: ignore[operator]
        rows.append(row)
    for name, counts in ran_on.items():
        rows[-1][f"{name}: small requests by where they ran"] = counts
    return rows


def small_requests_ran_on(rest_port: int) -> str:
    """The server's `advantage_small_requests_total` from its /metrics, "where: count" pairs."""
    with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/metrics", timeout=30) as reply:
        text = reply.read().decode()
    counts = []
    for line in text.splitlines():
        if line.startswith("advantage_small_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            where = labels.split('ran_on="', 1)[1].split('"', 1)[0]
            counts.append(f"{where}: {float(value):.0f}")
    return ", ".join(counts) or "none"


# -- 3. bytes on the wire ----------------------------------------------------------------------


def wire_bytes(shapes: list[tuple[int, int]]) -> list[dict[str, object]]:
    from advantage_client._request import prepare

    rows = []
    for batch, steps in shapes:
        data = trajectories(batch, steps)
        raw = sum(
            data[k].numel() * data[k].element_size()
            for k in ("observation", "next_observation", "reward", "done", "terminated")
        )
        row: dict[str, object] = {"shape": f"{batch}x{steps}", "raw_MB": raw / 1e6}
        for form in ("full", "compact"):
            obs = ("observation", "next_observation")
            if form == "compact":
                obs = ("compact_observation", "compact_next")
            prepared = prepare(
                model=MODEL,
                form=form,
                reward=data["reward"],
                done=data["done"],
                terminated=data["terminated"],
                observation=data[obs[0]],
                next_observation=data[obs[1]],
            )
            row[form] = (prepared.request.ByteSize() + 5) / raw  # + gRPC's 5-byte frame
        rows.append(row)
    return rows


# -- profile of the server's hot path (in-process, no transport) -------------------------------


def profile(net_folder: Path, batch: int, steps: int, form: str, repeats: int) -> str:
    from advantage_client._request import prepare

    from service.api.handlers import compute_advantage_handler
    from service.models.loading import load_repository
    from service.models.registry import ModelRegistry
    from service.runtime import Runtime

    registry = Runtime(ModelRegistry(load_repository(net_folder, torch.device("cpu"))))
    data = trajectories(batch, steps)
    obs = ("observation", "next_observation")
    if form == "compact":
        obs = ("compact_observation", "compact_next")
    request = prepare(
        model=MODEL,
        form=form,
        reward=data["reward"],
        done=data["done"],
        terminated=data["terminated"],
        observation=data[obs[0]],
        next_observation=data[obs[1]],
    ).request
    compute_advantage_handler(registry, request)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    for _ in range(repeats):
        response = compute_advantage_handler(registry, request)
    profiler.disable()
    per_call = (time.perf_counter() - start) / repeats * 1e3
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
    timing = response.timing
    return (
        f"handler {batch}x{steps} {form}: {per_call:.1f} ms/call (decode {timing.decode_ms:.2f}, "
        f"network {timing.network_ms:.2f}, estimator {timing.estimator_ms:.2f}, "
        f"encode {timing.encode_ms:.2f} ms)\n" + out.getvalue()
    )


# -- main --------------------------------------------------------------------------------------


def table(rows: list[dict[str, object]], columns: list[str]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 0.01 else f"{value:.2f}"
        return str(value)

    lines = [" | ".join(columns), " | ".join("---" for _ in columns)]
    lines += [" | ".join(cell(row.get(c, "")) for c in columns) for row in rows]
    return "\n".join(lines)


def small_parts(repository: Path, args: argparse.Namespace) -> None:
    rounds, per_client = (1, 5) if args.quick else (args.rounds, 30)
    print(
        f"\n## 4. Small calls: B=2, T=32 request bytes, {args.clients} concurrent callers × "
        f"{per_client}, ours against a grpc.aio echo server (median of {rounds} interleaved rounds)"
    )
    rows = small_calls(repository, args.clients, per_client, rounds)
    print(
        table(
            rows,
            ["request", "server", "bytes", "calls_per_s", "p50_ms", "p99_ms", "server_cpu_ms",
             "vs_echo", "vs_echo per round"],
        )
    )  # fmt: skip
    print("\nThe same requests through the handler in this process (no gRPC), CPU ms per call:")
    print(
        table(
            handler_cpu(repository),
            ["request", "handler_cpu_ms", "decode_ms", "network_ms", "estimator_ms", "encode_ms"],
        )
    )
    print(f"\n## 6. Large requests: MB/s against the echo ceiling (median of {rounds} rounds)")
    print(
        table(
            wire_throughput(repository, rounds),
            ["shape", "request_MB", "ours_MB_per_s", "echo_MB_per_s", "ours/echo"],
        )
    )
    concurrencies = [1, 4, 32] if args.quick else [1, 2, 4, 8, 32, 64]
    print(f"\n## 5. Batching off and on (delay 0), same bytes, {per_client} calls per caller")
    rows = batching_on_off(repository, concurrencies, per_client, rounds)
    print(
        table(
            rows,
            ["clients", "off_calls_per_s", "on_calls_per_s", "on/off", "on/off per round",
             "off_p99_ms", "on_p99_ms"],
        )
    )  # fmt: skip
    for name in ("off", "on"):  # counted by the server over every round (warm-ups included)
        key = f"{name}: small requests by where they ran"
        print(f"batching {name}: small requests by where they ran: {rows[-1][key]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--profile", action="store_true", help="cProfile the server's handler")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--small", action="store_true", help="only parts 4, 5 and 6")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of parts 4-6")
    parser.add_argument("--echo-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bare-handler", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_server:
        echo_server(args.echo_server, args.bare_handler)
        return
    torch.set_num_threads(os.cpu_count() or 1)
    shapes = [(64, 128)] if args.quick else [(64, 128), (256, 256)]
    repeats = 3 if args.quick else 15
    per_client = 4 if args.quick else 30
    net = value_net()
    with tempfile.TemporaryDirectory() as tmp:
        repository = Path(tmp)
        export_model(
            repository / MODEL, MODEL, [InputSpec(name="observation", shape=(OBS,))],
            value_network=net,
        )  # fmt: skip
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, shapes {shapes}")
        with open("/proc/loadavg") as f:
            print(f"load average and runnable/total tasks at start: {f.read().strip()}")
        if args.small:
            small_parts(repository, args)
            return

        print("\n## 1. End to end (GAE, medians in ms; remote = loopback gRPC, separate process)")
        # TorchRL in this process, first with glibc's default allocator, then tuned as the
        # server tunes itself (service.estimators.memory.tune_allocator): ratios use the faster
        # baseline.
        baseline = torchrl_times(net, shapes, repeats, "")
        tuned = tune_allocator()
        baseline_tuned = torchrl_times(net, shapes, repeats, "_tuned")
        with server_process(repository) as target:
            rows = end_to_end(target, net, shapes, repeats)
        for row, shape in zip(rows, shapes, strict=True):
            row |= baseline[shape] | baseline_tuned[shape]
            for mode in ("default", "shifted"):
                best = min(row[f"torchrl_{mode}"], row[f"torchrl_{mode}_tuned"])
                for form in ("full", "compact"):
                    row[f"{form}/{mode}"] = row[f"remote_{form}"] / best
        print(f"(allocator tuned in this process: {tuned})")
        print(
            table(
                rows,
                ["shape", "torchrl_default", "torchrl_shifted", "one_forward",
                 "torchrl_default_tuned", "torchrl_shifted_tuned", "one_forward_tuned",
                 "remote_full", "remote_compact"],
            )
        )  # fmt: skip
        print()
        print(
            table(
                rows,
                ["shape", "full/default", "full/shifted", "compact/default", "compact/shifted",
                 "maxdiff_full", "maxdiff_compact"],
            )
        )  # fmt: skip

        print(
            f"\n## 2. Concurrency ({args.clients} clients × {per_client} requests, B∈[1,4], T=32)"
        )
        results = []
        for label, extra in (
            ("off", ["--no-batching"]),
            ("on, delay 0", ["--batching", "--max-queue-delay-us", "0"]),
            ("on, delay 500us", ["--batching", "--max-queue-delay-us", "500"]),
        ):
            with server_process(repository, *extra) as target:
                results.append({"batching": label} | concurrency(target, args.clients, per_client))
        base = results[0]["throughput"]
        for row in results:
            row["speedup"] = row["throughput"] / base
        print(table(results, ["batching", "requests", "throughput", "p50_ms", "p99_ms", "speedup"]))

        print("\n## 3. Request bytes on the wire / raw tensor bytes (full-form tensors)")
        print(table(wire_bytes(shapes), ["shape", "raw_MB", "full", "compact"]))

        small_parts(repository, args)

        if args.profile:
            print("\n## Profile of the server handler (cProfile, in-process)")
            for form in ("full", "compact"):
                print(profile(repository, *shapes[0], form, repeats))


if __name__ == "__main__":
    main()
