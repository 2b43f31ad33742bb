"""The README's quickstart runs as printed against a real server."""

from __future__ import annotations

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
