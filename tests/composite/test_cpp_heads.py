"""The C++ client sends a mask and per-head actions and log-probabilities to a real server
process holding the two-head demo model (the example `heads_and_masks`): masked GAE equals
TorchRL's on each unpadded segment; the loss reports each head's entropy; a missing head is
INVALID_ARGUMENT naming it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torchrl.objectives.value.functional import generalized_advantage_estimate

from tests.support.cpp_build import build_examples
from tests.support.servers import start_server_process


@pytest.fixture(scope="module")
def lines(tmp_path_factory: pytest.TempPathFactory) -> list[list[str]]:
    build, problem = build_examples(tmp_path_factory.mktemp("cpp-heads-build"))
    if build is None:
        pytest.fail(problem or "no build", pytrace=False)
    models = tmp_path_factory.mktemp("models")
    subprocess.run(
        [sys.executable, "-m", "service.cli", "export-model", str(models / "demo_heads"),
         "--two-heads"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    process, port = start_server_process("--model-repository", str(models))
    try:
        run = subprocess.run(
            [str(build / "heads_and_masks"), f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        process.terminate()
        process.wait(30)
    assert run.returncode == 0, run.stdout + run.stderr
    return [line.split() for line in run.stdout.splitlines()]


def test_masked_gae_equals_torchrl_per_segment(lines) -> None:
    rows = [[float(x) for x in line[1:]] for line in lines if line[0] == "input"]
    results = [[float(x) for x in line[1:]] for line in lines if line[0] == "result"]
    data = torch.tensor(rows, dtype=torch.float64).view(2, 5, -1)
    result = torch.tensor(results, dtype=torch.float64).view(2, 5, -1)
    mask = data[..., 7].bool()
    gamma, lmbda = torch.tensor(0.9, dtype=torch.float64), torch.tensor(0.8, dtype=torch.float64)
    for b in range(2):
        length = int(mask[b].sum())
        # Columns: b, t, reward, done, terminated, state_value, next_state_value, mask.
        seg = data[b, :length].T.unsqueeze(1).unsqueeze(-1)  # column i: [1, length, 1]
        advantage, target = generalized_advantage_estimate(
            gamma, lmbda, seg[5], seg[6], seg[2], seg[3].bool(), seg[4].bool()
        )
        torch.testing.assert_close(result[b, :length, 2], advantage.view(-1))
        torch.testing.assert_close(result[b, :length, 3], target.view(-1))
        assert bool((result[b, length:, 2:] == 0).all())


def test_loss_reports_each_heads_entropy(lines) -> None:
    (loss,) = [line for line in lines if line[0] == "loss"]
    values = dict(zip(loss[0::2], map(float, loss[1::2]), strict=True))
    assert values["entropy"] == pytest.approx(values["move_entropy"] + values["aim_entropy"])
    assert values["move_entropy"] > 0


def test_missing_head_is_invalid_argument(lines) -> None:
    (line,) = [line for line in lines if line[0] == "missing_head"]
    assert line[1] == "INVALID_ARGUMENT"
    assert "missing ['aim']" in " ".join(line[2:])
