"""Health, reflection, graceful shutdown and the command line, on real servers."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from torch import nn

from service.models.demo import demo_manifest, demo_networks
from service.models.model import Model
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.settings import Settings
from tests.support.servers import running_server, start_server_process
from tests.support.wire import full_trajectory, random_batch, stub


def health_status(target: str, service: str = "") -> int:
    channel = grpc.insecure_channel(target)
    return (
        health_pb2_grpc.HealthStub(channel)
        .Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        .status
    )


def test_health_serving(grpc_target: str) -> None:
    assert health_status(grpc_target) == health_pb2.HealthCheckResponse.SERVING
    assert (
        health_status(grpc_target, "advantage.v1.AdvantageService")
        == health_pb2.HealthCheckResponse.SERVING
    )


def test_reflection_lists_the_service(grpc_target: str) -> None:
    database = ProtoReflectionDescriptorDatabase(grpc.insecure_channel(grpc_target))
    services = database.get_services()
    assert "advantage.v1.AdvantageService" in services
    assert "grpc.health.v1.Health" in services
    method = database.FindFileContainingSymbol("advantage.v1.AdvantageService")
    assert method.name == "advantage/v1/advantage.proto"


def test_list_and_get_model_describe_the_demo(grpc_target: str) -> None:
    api = stub(grpc_target)
    models = api.ListModels(pb.ListModelsRequest()).models
    assert [m.name for m in models] == ["demo"]
    info = api.GetModel(pb.GetModelRequest()).model  # empty name = the default model
    assert info.name == "demo"
    assert [(i.name, list(i.shape), i.dtype) for i in info.inputs] == [
        ("observation", [4], pb.DTYPE_FLOAT32)
    ]
    assert info.action.distribution == pb.DISTRIBUTION_CATEGORICAL
    assert info.action.num_actions == 2
    assert info.has_value_network and info.has_actor_network
    assert info.device == "cpu"
    assert (info.defaults.gamma, info.defaults.lmbda) == (0.99, 0.95)


class SlowValue(nn.Module):
    """The demo value network, made slow so a call is surely in flight during shutdown."""

    def __init__(self, started: threading.Event) -> None:
        super().__init__()
        self.inner = demo_networks()[0]
        self.started = started

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        self.started.set()
        time.sleep(1.0)
        return self.inner(observation)


def test_graceful_stop_drains_in_flight_calls_and_refuses_new_ones() -> None:
    started = threading.Event()
    model = Model(demo_manifest(), torch.device("cpu"), value_network=SlowValue(started))
    with running_server(models={"demo": model}) as server:
        started.clear()  # the start-up warm-up ran the network once
        api = stub(server.target)
        request = pb.ComputeAdvantageRequest(trajectory=full_trajectory(random_batch()))
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(api.ComputeAdvantage, request, timeout=30)
            assert started.wait(10)
            stopping = threading.Thread(target=server.call, args=(server.server.stop(5.0),))
            stopping.start()
            time.sleep(0.2)
            try:
                state = health_status(server.target)
                assert state == health_pb2.HealthCheckResponse.NOT_SERVING
            except grpc.RpcError as error:  # listener already closed: also "not serving"
                assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert list(in_flight.result().advantage.shape) == [3, 16]  # drained, not dropped
            stopping.join(10)
        try:
            api.ComputeAdvantage(request, timeout=5)
            raise AssertionError("a stopped server answered")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_command_line_serves_and_exits_cleanly_on_sigterm(tmp_path) -> None:
    process, port = start_server_process(env={"ADVANTAGE_GRACE_SECONDS": "2"})
    try:
        target = f"127.0.0.1:{port}"
        assert health_status(target) == health_pb2.HealthCheckResponse.SERVING
        response = stub(target).ComputeAdvantage(
            pb.ComputeAdvantageRequest(trajectory=full_trajectory(random_batch()))
        )
        assert response.model_name == "demo"
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        process.kill()
        process.wait()


def test_settings_from_environment(monkeypatch) -> None:
    from service.cli import build_settings

    monkeypatch.setenv("ADVANTAGE_MAX_MESSAGE_MB", "8")
    monkeypatch.setenv("ADVANTAGE_DEVICE", "cpu")
    settings = build_settings(["serve"])
    assert settings.max_message_bytes == 8 * 1024 * 1024
    assert settings.torch_device() == torch.device("cpu")
    assert isinstance(Settings().port, int)


def test_networks_are_warmed_up_before_the_server_reports_serving() -> None:
    started = threading.Event()
    model = Model(demo_manifest(), torch.device("cpu"), value_network=SlowValue(started))
    with running_server(models={"demo": model}) as server:
        # SlowValue sleeps 1 s per call: SERVING came after one full forward pass.
        assert started.is_set()
        assert health_status(server.target) == health_pb2.HealthCheckResponse.SERVING


class _Heavy(nn.Module):
    """A value network that takes seconds per call on this machine: `rounds` 1024-wide layers."""

    def __init__(self, rounds: int) -> None:
        super().__init__()
        self.inp = nn.Linear(4, 1024)
        self.hidden = nn.Linear(1024, 1024)
        self.out = nn.Linear(1024, 1)
        self.rounds = rounds

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inp(observation))
        for _ in range(self.rounds):
            h = torch.tanh(self.hidden(h))
        return self.out(h)


def test_shutdown_does_not_wait_for_a_computation_past_the_grace_period(tmp_path) -> None:
    from service.models.export import export_model

    repository = tmp_path / "models"
    # 4,000 rows × 400 layers of 1024² ≈ 1.7 TFLOP: minutes on 2 cores, far past grace + 1 s.
    export_model(
        repository / "demo",
        "demo",
        demo_manifest().inputs,
        value_network=_Heavy(rounds=400),
        file_format="torch.export",
    )
    process, port = start_server_process(
        "--grace-seconds", "1", "--model-repository", str(repository)
    )
    try:
        batch = random_batch((4,), 1000)
        request = pb.ComputeAdvantageRequest(trajectory=full_trajectory(batch))
        call = stub(f"127.0.0.1:{port}").ComputeAdvantage.future(request, timeout=600)
        time.sleep(2)  # the request reaches the server and its forward pass starts
        assert not call.done(), "the heavy request should still be computing"
        process.send_signal(signal.SIGTERM)
        assert process.wait(120) == 0
        log = process.stderr.read()
        # The process left the computation behind instead of running it to the end.
        assert "exiting with computations still running" in log, log
        with pytest.raises(grpc.RpcError) as ended:
            call.result()
        assert ended.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
    finally:
        process.kill()
        process.wait()
