"""Build the C++ client (clients/cpp) with CMake into a folder: its example executables, or why
they could not be built (the caller fails the test with it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CPP_CLIENT = Path(__file__).resolve().parents[2] / "clients" / "cpp"
INSTALL = (
    "install the C++ toolchain and Debian's gRPC packages: apt-get install -y cmake g++ "
    "pkg-config libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc"
)


def build_examples(build_dir: Path) -> tuple[Path | None, str | None]:
    """(the build folder holding the examples, None) or (None, the problem)."""
    tools = ("cmake", "protoc", "grpc_cpp_plugin")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if shutil.which("c++") is None and shutil.which("g++") is None:
        missing.append("C++ compiler (g++)")
    if missing:
        return None, f"missing {', '.join(missing)}; {INSTALL}"
    steps = (
        ["cmake", "-S", str(CPP_CLIENT), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE="],
        ["cmake", "--build", str(build_dir), "--parallel", str(os.cpu_count() or 2)],
    )
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            output = (done.stdout + done.stderr)[-4000:]
            return None, f"`{' '.join(step)}` failed; {INSTALL}\n{output}"
    return build_dir, None
