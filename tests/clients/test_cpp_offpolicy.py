"""The C++ client's off-policy calls (clients/cpp examples/offpolicy_step) against a real server
with the off-policy demos: the same DQN and SAC steps sent by the Python stub to a second server
with the same fresh models give the same numbers; a bad action index is INVALID_ARGUMENT."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from service.models.demo import demo_model
from service.models.demo_offpolicy import offpolicy_demo_models
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.wire.codec import decode_tensor, encode_tensor
from tests.support.offpolicy import stub
from tests.support.servers import running_server

CPP_CLIENT = Path(__file__).resolve().parents[2] / "clients" / "cpp"
CPU = torch.device("cpu")
B = 4


@pytest.fixture(scope="module")
def offpolicy_step(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [t for t in ("cmake", "g++", "protoc", "grpc_cpp_plugin") if shutil.which(t) is None]
    if missing:
        pytest.fail(
            f"missing {missing}: apt-get install -y cmake g++ pkg-config libgrpc++-dev "
            "libprotobuf-dev protobuf-compiler protobuf-compiler-grpc",
            pytrace=False,
        )
    build = tmp_path_factory.mktemp("cpp-offpolicy-build")
    for step in (
        ["cmake", "-S", str(CPP_CLIENT), "-B", str(build), "-DCMAKE_BUILD_TYPE="],
        ["cmake", "--build", str(build), "--parallel", str(os.cpu_count() or 2)],
    ):
        done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return build / "offpolicy_step"


def _models() -> dict:
    return {"demo": demo_model(CPU), **offpolicy_demo_models(CPU)}


def _observations(size: int, shift: float) -> torch.Tensor:
    """The example's fixed observations: 0.1·(i mod 7) − 0.3 + shift, row-major [4, size]."""
    i = np.arange(B * size)
    values = (np.float32(0.1) * (i % 7).astype(np.float32) - np.float32(0.3)) + np.float32(shift)
    return torch.from_numpy(values.astype(np.float32).reshape(B, size))


def _trajectory(size: int, action: torch.Tensor) -> pb.Trajectory:
    return pb.Trajectory(
        observation={"observation": encode_tensor(_observations(size, 0.0))},
        next_observation={"observation": encode_tensor(_observations(size, 0.05))},
        action=encode_tensor(action),
        reward=encode_tensor(torch.tensor([1.0, -0.5, 0.25, 0.0])),
        done=encode_tensor(torch.tensor([False, True, False, True])),
        terminated=encode_tensor(torch.tensor([False, True, False, False])),
    )


def test_cpp_offpolicy_steps_equal_the_same_requests_from_python(offpolicy_step: Path) -> None:
    with running_server(models=_models()) as server:
        run = subprocess.run(
            [str(offpolicy_step), f"127.0.0.1:{server.port}"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = {line.split()[0]: line.split() for line in run.stdout.splitlines()}
    dqn, sac, error = lines["dqn"], lines["sac"], lines["error"]

    with running_server(models=_models()) as server:
        python = stub(server.port)
        dqn_ref = python.ComputeLoss(
            pb.ComputeLossRequest(
                model_name="demo_dqn",
                trajectory=_trajectory(4, torch.tensor([0, 1, 1, 0])),
                dqn=pb.DQNLoss(double_dqn=True, gamma=0.9),
                apply_update=True,
                expected_parameter_version=0,
                target_update=pb.TargetUpdate(hard_interval=0),
                return_td_error=True,
            )
        )
        sac_ref = python.ComputeLoss(
            pb.ComputeLossRequest(
                model_name="demo_sac",
                trajectory=_trajectory(3, torch.tensor([[0.5], [-0.25], [0.0], [0.75]])),
                sac=pb.SACLoss(seed=5, alpha_init=0.5),
                apply_update=True,
                target_update=pb.TargetUpdate(tau=0.5),
            )
        )
    assert float(dqn[2]) == dqn_ref.loss  # %.17g: the double exactly
    assert dqn[3:8] == ["version", "0", "1", "targets", "1"]
    td_error = decode_tensor(dqn_ref.td_error, "td_error").tolist()
    assert [float(x) for x in dqn[9:]] == td_error
    assert float(sac[2]) == sac_ref.loss
    assert sac[3:8] == ["version", "0", "1", "targets", "1"]
    metrics = dict(item.split("=") for item in sac[8:])
    assert {k: float(v) for k, v in metrics.items()} == dict(sac_ref.metrics)
    assert float(metrics["alpha"]) == 0.5
    assert error[1] == "INVALID_ARGUMENT" and "trajectory.action" in " ".join(error)
