"""The C++ client's one-call DreamerV3 learner step (`examples/dreamer_step`) against a real
server: one update, one new version, TorchRL's names, the posterior latents; a horizon above
the server's limit is RESOURCE_EXHAUSTED. Builds the client with CMake (missing tools fail the
test with the packages to install, as tests/clients/test_cpp_client.py does)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from service.settings import Settings
from tests.support.servers import running_server

CPP_CLIENT = Path(__file__).resolve().parents[2] / "clients" / "cpp"
INSTALL = (
    "apt-get install -y cmake g++ pkg-config libgrpc++-dev libprotobuf-dev protobuf-compiler "
    "protobuf-compiler-grpc"
)


@pytest.fixture(scope="module")
def dreamer_step(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [t for t in ("cmake", "g++", "protoc", "grpc_cpp_plugin") if not shutil.which(t)]
    if missing:
        pytest.fail(f"missing {missing}; {INSTALL}", pytrace=False)
    build = tmp_path_factory.mktemp("cpp-dreamer-build")
    for step in (
        ["cmake", "-S", str(CPP_CLIENT), "-B", str(build), "-DCMAKE_BUILD_TYPE="],
        ["cmake", "--build", str(build), "--parallel", "2", "--target", "dreamer_step"],
    ):
        done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return build / "dreamer_step"


def _run(executable: Path, target: str, horizon: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(executable), target, str(horizon)], capture_output=True, text=True, timeout=300
    )


def test_cpp_dreamer_step(dreamer_step: Path) -> None:
    with running_server(Settings(max_imagination_steps=20, dreamer_demo=True)) as server:
        done = _run(dreamer_step, server.target, 5)
        too_long = _run(dreamer_step, server.target, 21)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line.split() for line in done.stdout.splitlines()]
    step = next(line for line in lines if line[0] == "step")
    assert step[1:4] == ["0", "1", "1"]  # version 0 → 1, updated
    metrics = {line[1]: float(line[2]) for line in lines if line[0] == "metric"}
    assert {"loss_model_kl", "loss_model_reco", "loss_actor", "loss_value"} <= set(metrics)
    total = sum(v for k, v in metrics.items() if k.startswith("loss_"))
    assert float(step[4]) == pytest.approx(total, rel=1e-5)
    posterior = {line[1]: line[2:] for line in lines if line[0] == "posterior"}
    assert posterior == {"belief": ["2", "6", "16"], "state": ["2", "6", "16"]}
    assert too_long.returncode == 1
    assert too_long.stdout.startswith("error RESOURCE_EXHAUSTED ")
    assert "imagination_horizon: 21 steps" in too_long.stdout
