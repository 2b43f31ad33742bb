"""The two-head demo model: exported to a model repository (torch.export and TorchScript),
served by a server process, described by GetModel and trained over the wire."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support.servers import start_server_process
from tests.support.wire import stub, tensor


@pytest.mark.parametrize("file_format", ["torch.export", "torchscript"])
def test_exported_two_head_demo_serves_and_trains(tmp_path, file_format: str) -> None:
    folder = tmp_path / "models" / "demo_heads"
    subprocess.run(
        [sys.executable, "-m", "service.cli", "export-model", str(folder), "--two-heads",
         "--format", file_format],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    process, port = start_server_process("--model-repository", str(tmp_path / "models"))
    try:
        api = stub(f"127.0.0.1:{port}")
        info = api.GetModel(pb.GetModelRequest(model_name="demo_heads"), timeout=60).model
        assert [h.name for h in info.action.heads] == ["move", "aim"]
        g = torch.Generator().manual_seed(0)
        steps = (2, 5)
        trajectory = pb.Trajectory(
            reward=tensor(torch.randn(steps, generator=g)),
            done=tensor(torch.zeros(steps, dtype=torch.bool)),
            sample_log_prob=tensor(torch.full(steps, -1.5)),
        )
        observation = torch.randn(2, 6, 4, generator=g)
        trajectory.observation["observation"].CopyFrom(tensor(observation[:, :-1]))
        trajectory.next_observation["observation"].CopyFrom(tensor(observation[:, 1:]))
        trajectory.action_heads["move"].CopyFrom(tensor(torch.randint(0, 3, steps, generator=g)))
        trajectory.action_heads["aim"].CopyFrom(tensor(torch.rand(2, 5, 2, generator=g) - 0.5))
        response = api.ComputeLoss(
            pb.ComputeLossRequest(
                model_name="demo_heads", trajectory=trajectory, apply_update=True,
                composite_lp_aggregate=False,
            ),
            timeout=60,
        )  # fmt: skip
        assert response.updated and response.new_parameter_version == 1
        assert {"composite_entropy.move_entropy", "composite_entropy.aim_entropy"} <= set(
            response.metrics
        )
        entropy = response.metrics["entropy"]
        heads = response.metrics["composite_entropy.move_entropy"]
        heads += response.metrics["composite_entropy.aim_entropy"]
        assert entropy == pytest.approx(heads, rel=1e-6)
    finally:
        process.terminate()
        process.wait(30)
