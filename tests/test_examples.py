"""The examples run as the READMEs say, against real servers."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_quickstart_prints_advantages(grpc_target: str) -> None:
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        env={**os.environ, "ADVANTAGE_TARGET": grpc_target},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = run.stdout.splitlines()
    assert lines[0] == "model demo version 0"
    assert "advantage" in lines[1] and "value_target" in run.stdout
    # The first segment terminates at step 3 with reward 1: its value target there is exactly 1.
    assert lines[5].split()[3] == "1."


def test_remote_ppo_learns_cartpole_shortened(tmp_path: Path) -> None:
    """examples/remote_ppo, shortened to 20 iterations (20,480 environment steps): it exports its
    model, starts its own server, and the mean return of the last 100 episodes has at least
    quadrupled from a random policy's (about 22; the full run's is about 160 at this point and
    reaches 475 near 94,000 steps). It writes the CSV and the PNG."""
    run = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "remote_ppo" / "train.py"),
            "--max-iterations",
            "20",
            "--quiet",
            "--out",
            str(tmp_path),
        ],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    assert "not solved" in run.stdout  # 20 iterations are not enough, and it says so
    with (tmp_path / "learning_curve.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [int(r["iteration"]) for r in rows] == list(range(1, 21))
    assert int(rows[-1]["env_steps"]) == 20 * 8 * 128
    # 4 epochs × 4 minibatches: one committed update each, chained by compare-and-set.
    assert int(rows[-1]["parameter_version"]) == 20 * 16
    # Actors act with the newest policy: each iteration's pull got the previous one's last version.
    pulled = [int(r["pulled_version"]) for r in rows]
    assert pulled == [0] + [int(r["parameter_version"]) for r in rows[:-1]]
    assert float(rows[0]["mean_return_100"]) < 40  # the near-uniform first policy
    assert float(rows[-1]["mean_return_100"]) >= 90
    for row in rows:
        assert all(float(row[k]) > 0 for k in ("rollout_s", "rpc_s", "server_s"))
    assert (tmp_path / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
