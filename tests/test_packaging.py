"""What `pip install .` (docker/Dockerfile's install step) ships: code, stubs, static assets."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contains_everything_the_server_loads(tmp_path: Path) -> None:
    # Build from a copy of what the Dockerfile copies, so setuptools' build/ stays out of the tree.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "service", source / "service", ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("advantage_service-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "service/server.py",
        "service/pb/advantage/v1/advantage_pb2.py",
        "service/pb/advantage/v1/advantage_pb2_grpc.py",
        "service/estimators/_kernels.py",
        "service/api/rest/static/debug.html",
        "service/api/rest/static/debug.js",
    ):
        assert required in names, required
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "advantage-service = service.cli:main" in text


def test_dockerfile_pins_the_same_torch_as_the_makefile_and_installs_it_first() -> None:
    makefile = (ROOT / "Makefile").read_text()
    pinned = re.search(r"pip install [^\n]*torch==([0-9.]+)", makefile)
    assert pinned, "the Makefile installs a pinned torch"
    lines = (ROOT / "docker" / "Dockerfile").read_text().splitlines()
    assert f"ARG TORCH_VERSION={pinned.group(1)}" in lines
    installs = [line for line in lines if line.startswith("RUN pip install")]
    assert installs[0].startswith('RUN pip install "torch==${TORCH_VERSION}"')
    assert installs[1] == "RUN pip install ."
