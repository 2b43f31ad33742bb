"""The Makefile's set-up layers, read from `make -n` (prints the commands, runs nothing)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def _plan(tmp_path: Path, *targets: str) -> list[str]:
    """The commands `make` would run from a fresh venv at tmp_path/venv."""
    # Under `make test`, the parent make's flags would leak in (and its directory messages).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    done = subprocess.run(
        ["make", "-n", f"VENV={tmp_path / 'venv'}", *targets],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.splitlines()


def _installs(commands: list[str]) -> list[str]:
    return [c for c in commands if "pip install" in c or "install_torch.py" in c]


def test_serve_installs_torch_then_only_the_server_and_passes_args(tmp_path: Path) -> None:
    commands = _plan(tmp_path, "serve", "ARGS=--port 50052 --rest-port 0")
    bin_dir = tmp_path / "venv" / "bin"
    torch_step, server_step = _installs(commands)
    assert torch_step == (
        f"{bin_dir}/python scripts/install_torch.py -- {bin_dir}/pip install -q torch==2.13.0"
    )
    assert server_step == f"{bin_dir}/pip install -q -e ."
    assert commands[-1] == f"{bin_dir}/advantage-service serve --port 50052 --rest-port 0"


def test_the_tests_add_the_dev_extras_and_the_client_on_top_of_the_server(tmp_path: Path) -> None:
    installs = _installs(_plan(tmp_path, "test-python"))
    assert len(installs) == 3  # torch, the server, then the rest
    assert installs[2].endswith(
        "pip install -q -e '.[dev,examples]' -e 'clients/python[torch,torchrl]'"
    )


def test_torch_plan_is_a_dry_run(tmp_path: Path) -> None:
    (command,) = _installs(_plan(tmp_path, "torch-plan"))
    assert "install_torch.py --dry-run -- " in command
