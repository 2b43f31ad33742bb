"""The replicas proof, on real processes over loopback.

A learner and three replicas run as separate `advantage-service serve` processes; eight client
processes (`load_client.py`) send a bounded mixed load through one round_robin channel each over
the three replicas. Meanwhile this test, as the learner's driver, applies 20 updates (ComputeLoss
with apply_update and SetParameters, alternately), reads its own writes through the replicas
after each (min_parameter_version), and SIGKILLs one replica, while calls surely wait on it, and
restarts it on the same port.

Asserted: every client call was answered (after the retry policy); every answer's numbers equal
an in-process computation with the parameters of the version it reports; no replica's version
ever goes backwards (a WatchModels stream on each); the restarted replica turns SERVING only
holding a version at least as new as the learner's when it restarted; every replica ends at the
learner's last version. No wall-clock assertion: every wait is a bounded poll for a condition.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import torch
from advantage_client import AdvantageClient
from advantage_client._loss import prepare_loss
from advantage_client._request import prepare

from service.api import handlers
from service.models.demo import demo_model
from service.models.registry import ModelRegistry
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.runtime import Runtime
from service.runtime.replica import ReplicaState
from tests.support.load_client import call_arguments, parameter_digest
from tests.support.replication import (
    SERVING,
    health,
    metric,
    model_version,
    parameter_stream,
    perturbed,
    wait_until,
)
from tests.support.wire import array, full_trajectory, parameters, random_batch, stub

ROOT = Path(__file__).resolve().parents[2]
UPDATES = 20
CLIENTS = 8
KILL_AT, RESTART_AT = 6, 9  # update indexes (the replica is down during updates 6–8)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """`advantage-service serve` in a process of its own, its log in a file."""

    def __init__(self, log: Path, *args: str) -> None:
        self.log_path = log
        self._log = log.open("w")
        # A free REST port (0 would turn REST off): /readyz and /metrics are read.
        command = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1",
                   "--rest-port", str(free_port()), "--grace-seconds", "1", *args]  # fmt: skip
        if "--port" not in args:
            command += ["--port", "0"]
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, env=os.environ.copy()
        )
        self.port = self.rest_port = 0

    def wait_listening(self, timeout: float = 120.0) -> ServerProcess:
        def ports() -> tuple[int, int] | None:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited:\n{self.log_path.read_text()[-3000:]}")
            text = self.log_path.read_text()
            grpc_port = re.search(r"listening on 127\.0\.0\.1:(\d+)", text)
            rest_port = re.search(r"REST debug surface on http://127\.0\.0\.1:(\d+)", text)
            if grpc_port and rest_port:
                return int(grpc_port.group(1)), int(rest_port.group(1))
            return None

        self.port, self.rest_port = wait_until(ports, "the server to listen", timeout, 0.05)
        return self

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def in_flight(server: ServerProcess) -> float:
    """The gRPC calls `server` is working on now (its /metrics)."""
    text = httpx.get(f"http://127.0.0.1:{server.rest_port}/metrics", timeout=30).text
    return metric(text, 'advantage_requests_in_flight{transport="grpc"}')


class VersionMonitor(threading.Thread):
    """The versions one replica process announces on WatchModels (only copies it holds)."""

    def __init__(self, target: str) -> None:
        super().__init__(daemon=True)
        self.channel = grpc.insecure_channel(target)
        self.versions: list[int] = []
        self.start()

    def run(self) -> None:
        from service.pb.advantage.v1 import advantage_pb2_grpc as pb_grpc

        call = pb_grpc.AdvantageServiceStub(self.channel).WatchModels(pb.WatchModelsRequest())
        self.call = call
        with contextlib.suppress(grpc.RpcError):
            for message in call:
                self.versions.append(message.parameter_version)

    def close(self) -> None:
        with contextlib.suppress(AttributeError):
            self.call.cancel()
        self.join(30)
        self.channel.close()


def _update(api: Any, index: int) -> int:
    """Update `index` on the learner: a PPO step (odd) or new parameters (even); the version."""
    if index % 2:
        request = pb.ComputeLossRequest(
            trajectory=full_trajectory(random_batch((4,), steps=16, seed=1000 + index)),
            apply_update=True,
        )
        return api.ComputeLoss(request, timeout=60).new_parameter_version
    _, tensors = parameters(api)
    stream = parameter_stream(perturbed(tensors, 2000 + index))
    return api.SetParameters(iter(stream), timeout=60).parameter_version


class Recompute:
    """Answers computed in this process with the parameters of a given version."""

    def __init__(self, snapshots: dict[int, dict[str, torch.Tensor]]) -> None:
        self.snapshots = snapshots
        self._runtimes: dict[int, Runtime] = {}

    def runtime(self, version: int) -> Runtime:
        if version not in self._runtimes:
            model = demo_model(torch.device("cpu"))
            state = ReplicaState("learner", [model])
            state.install(model, self.snapshots[version], version)
            self._runtimes[version] = Runtime(ModelRegistry({"demo": model}))
        return self._runtimes[version]

    def check(self, record: dict[str, Any]) -> None:
        kind, version = record["kind"], record["version"]
        assert version in self.snapshots, record
        if kind == "params":
            tensors = {k: v.numpy() for k, v in self.snapshots[version].items()}
            assert record["digest"] == parameter_digest(tensors), record
            return
        if kind == "model":
            assert record["models"] == ["demo"]
            return
        arguments = call_arguments(kind, record["seed"])
        if kind == "loss":
            request = pb.ComputeLossRequest.FromString(
                prepare_loss(None, **arguments).request.SerializeToString()
            )
            reply = handlers.compute_loss_handler(self.runtime(version), request)
            assert reply.parameter_version == version and not record["updated"]
            assert record["out"]["loss"] == pytest.approx(reply.loss, rel=1e-5, abs=1e-6)
            assert record["out"]["metrics"] == pytest.approx(
                dict(reply.metrics), rel=1e-4, abs=1e-6
            )
            return
        request = pb.ComputeAdvantageRequest.FromString(
            prepare(None, **arguments).request.SerializeToString()
        )
        reply = handlers.compute_advantage_handler(self.runtime(version), request)
        assert reply.parameter_version == version
        for field, got in record["out"].items():
            expected = array(getattr(reply, field))
            torch.testing.assert_close(
                torch.tensor(np.asarray(got, dtype=np.float32)),
                expected,
                rtol=1e-5,
                atol=1e-6,
                msg=lambda m, f=field: f"{record['kind']} seed {record['seed']} {f}: {m}",
            )


def test_learner_three_replicas_eight_clients_updates_and_a_killed_replica(tmp_path: Path) -> None:
    servers: list[ServerProcess] = []
    monitors: list[VersionMonitor] = []
    clients: list[subprocess.Popen[bytes]] = []
    try:
        learner = ServerProcess(tmp_path / "learner.log")
        servers.append(learner)
        learner.wait_listening()
        replicas = [
            ServerProcess(tmp_path / f"replica{i}.log", "--follow", learner.target)
            for i in range(3)
        ]
        servers += replicas
        for replica in replicas:
            replica.wait_listening()
            wait_until(lambda r=replica: health(r.target) == SERVING, "a replica's first copy")
            monitors.append(VersionMonitor(replica.target))
        lapi = stub(learner.target)
        snapshots = {0: parameters(lapi)[1]}

        stop_file = tmp_path / "stop"
        targets = ",".join(replica.target for replica in replicas)
        for seed in range(CLIENTS):
            command = [sys.executable, "-m", "tests.support.load_client", "--targets",
                       targets, "--seed", str(seed), "--out", str(tmp_path / f"client{seed}.jsonl"),
                       "--stop", str(stop_file), "--min-calls", "25", "--max-calls", "5000",
                       "--seconds", "150"]  # fmt: skip
            log = (tmp_path / f"client{seed}.log").open("w")
            clients.append(subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=log))

        readiness: dict[str, Any] = {}

        def watch_restart(target: str, learner_version: int) -> None:
            """Poll the restarted replica's health from its first moment (same port); watch its
            versions; note what it holds when it turns SERVING."""
            statuses: list[int] = []
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    status = health(target, timeout=5)
                except grpc.RpcError:
                    time.sleep(0.01)  # not listening yet
                    continue
                if not statuses:
                    monitors.append(VersionMonitor(target))
                statuses.append(status)
                if status == SERVING:
                    readiness["version"] = model_version(stub(target))
                    readiness["learner_at_restart"] = learner_version
                    readiness["not_serving_polls"] = len(statuses) - 1
                    return
                time.sleep(0.01)

        with (
            AdvantageClient(targets.split(","), timeout=60) as reader,
            ThreadPoolExecutor(9) as pool,
        ):
            wait_until(lambda: all(c.poll() is None for c in clients), "the clients to start")
            version, watcher = 0, None
            for index in range(UPDATES):
                if index == KILL_AT:
                    # Calls surely in flight on the replica that dies: they ask for the version
                    # the next update makes, so every replica holds them waiting for it.
                    pending = [
                        pool.submit(
                            reader.compute_advantage,
                            **call_arguments("gae", 500 + n),
                            min_parameter_version=version + 1,
                        )
                        for n in range(9)
                    ]
                    wait_until(
                        lambda: in_flight(replicas[1]) >= 2, "calls waiting on the doomed replica"
                    )
                    replicas[1].kill()  # SIGKILL: its calls fail UNAVAILABLE and are retried
                    monitors[1].close()
                if index == RESTART_AT:
                    port = replicas[1].port
                    restarted = ServerProcess(
                        tmp_path / "replica1-restarted.log",
                        *("--port", str(port), "--follow", learner.target),
                    )
                    servers.append(restarted)
                    watcher = threading.Thread(
                        target=watch_restart, args=(f"127.0.0.1:{port}", version), daemon=True
                    )
                    watcher.start()
                    restarted.wait_listening()
                    replicas[1] = restarted
                version = _update(lapi, index)
                assert version == index + 1
                snapshots[version] = parameters(lapi)[1]
                if index == KILL_AT:  # answered elsewhere, with the version they asked for
                    answered = [future.result(timeout=120).parameter_version for future in pending]
                    assert all(v >= version for v in answered), answered
                # Read-your-writes: the next read, on any replica, sees this update.
                seen = reader.compute_advantage(
                    **call_arguments("gae", index), min_parameter_version=version
                )
                assert seen.parameter_version >= version
                time.sleep(0.2)
            assert watcher is not None
            watcher.join(150)
            ready = httpx.get(f"http://127.0.0.1:{replicas[1].rest_port}/readyz", timeout=30)
            assert ready.status_code == 200, ready.text
            for replica in replicas:
                wait_until(
                    lambda r=replica: model_version(stub(r.target)) == UPDATES,
                    "every replica at the learner's last version",
                )
        stop_file.touch()
        for process in clients:
            process.wait(150)

        # The restarted replica turned SERVING only with the learner's version of its restart
        # or a newer one (and readiness agreed).
        assert readiness["version"] >= readiness["learner_at_restart"], readiness
        # No version went backwards on a replica.
        live = [monitors[0], monitors[2], monitors[3]]  # monitors[1] watched the killed process
        wait_until(lambda: all(m.versions[-1:] == [UPDATES] for m in live), "the monitors")
        for monitor in monitors:
            assert monitor.versions == sorted(monitor.versions), monitor.versions
        assert monitors[-1].versions[0] >= readiness["learner_at_restart"]

        # Every call answered, with the numbers of the version it reports.
        recompute = Recompute(snapshots)
        records = []
        for seed, process in enumerate(clients):
            log = (tmp_path / f"client{seed}.log").read_text()
            assert process.returncode == 0, log
            lines = (tmp_path / f"client{seed}.jsonl").read_text().splitlines()
            records += [json.loads(line) for line in lines]
        lost = [record for record in records if "error" in record]
        assert lost == [], lost[:5]
        assert len(records) >= CLIENTS * 25
        for record in records:
            recompute.check(record)
            if record["kind"] == "ryw":
                assert record["version"] >= record["min"], record
        versions = {record["version"] for record in records}
        assert len(versions) > 3, versions  # the load spanned several versions
        print(  # shown with -s: what the run covered
            f"\n{len(records)} calls, versions {sorted(versions)}, restart: {readiness}, "
            f"monitored: {[m.versions for m in monitors]}"
        )
    finally:
        for process in clients:
            if process.poll() is None:
                process.kill()
                process.wait(30)
        for monitor in monitors:
            monitor.close()
        for server in servers:
            server.stop()
