"""Install the project's pinned torch from the right source for this machine, or keep the one there.

Usage (the Makefile's torch step; `make torch-plan` runs it with --dry-run):

    .venv/bin/python scripts/install_torch.py [--dry-run] -- .venv/bin/pip install -q torch==2.13.0

The command after `--` is the pip install of the pinned torch. This script either skips it or
runs it with the torch requirement replaced by the arguments below. Run it with the interpreter
of the environment being set up: that is where it looks for an installed torch. It uses the
standard library only, because it runs before that environment has anything.

The rule, first match wins (PIN is the pinned version, RANGE pyproject.toml's torch range):

1. Keep: the environment already has a torch in RANGE, whatever its build (CPU or CUDA).
   Nothing is downloaded. To switch builds, `pip uninstall torch` and run the set-up again.
2. TORCH_INDEX=URL is set: `torch==PIN --index-url URL`, e.g. .../whl/cu126 for a CUDA build or
   .../whl/cpu for the CPU build. TORCH_INDEX wins over GPU detection.
3. An NVIDIA GPU is present (nvidia-smi on PATH, /proc/driver/nvidia/version or /dev/nvidia0):
   `torch==PIN` from pip's configured sources; PyPI's Linux wheel is the CUDA build.
4. No GPU, and pip finds a CPU build of PIN (local version label `+cpu`) in its configured
   find-links, asked with `pip install --dry-run --no-index` (about 1 s, no network):
   `torch==PIN+cpu`, exactly that build. This is the case on the project's build machines,
   whose pip has the CPU wheel on local disk and cannot reach PyTorch's index.
5. No GPU otherwise: `torch==PIN --index-url https://download.pytorch.org/whl/cpu`, PyTorch's
   CPU index. This is a normal machine; a plain `torch==PIN` would download the CUDA build.

Rule 4 comes before rule 5 so that the CPU index is never contacted where a local CPU wheel
exists: an unreachable extra index costs every pip run five retries (about 9 s on the build
machines, where the name fails to resolve at once; much longer where connections hang).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
_PIN = re.compile(r"torch==(\d+(?:\.\d+)*)")
_CLAUSE = re.compile(r"\s*(>=|<=|==|!=|<|>)\s*(\d+(?:\.\d+)*)\s*")
_VERSION = re.compile(r"(\d+(?:\.\d+)*)([^+]*)(?:\+(.*))?")


@dataclass(frozen=True)
class Decision:
    """What to do: `args` replace the torch requirement in the pip command; None = skip it."""

    args: tuple[str, ...] | None
    reason: str


def decide(
    *,
    pin: str,
    allowed: str,
    installed: str | None,
    gpu: bool,
    torch_index: str | None,
    local_cpu_build: Callable[[], str | None],
) -> Decision:
    """Apply the module docstring's rule. Pure: no I/O besides calling `local_cpu_build`.

    pin: the pinned version, e.g. "2.13.0". allowed: pyproject's range, e.g. ">=2.4,<2.14".
    installed: the installed torch's version, or None. gpu: an NVIDIA GPU is present.
    torch_index: the TORCH_INDEX override, or None. local_cpu_build: returns the version of a
    CPU build of `pin` that pip finds without an index (e.g. "2.13.0+cpu"), or None; called only
    when rules 1-3 do not apply, because it runs pip.
    """
    if installed is not None and satisfies(installed, allowed):
        return Decision(None, f"keeping the installed torch {installed} (in {allowed})")
    replacing = f" (replacing torch {installed}, outside {allowed})" if installed else ""
    if torch_index:
        return Decision(
            (f"torch=={pin}", "--index-url", torch_index), f"TORCH_INDEX is set{replacing}"
        )
    if gpu:
        return Decision(
            (f"torch=={pin}",), f"NVIDIA GPU found: the default (CUDA) build{replacing}"
        )
    local = local_cpu_build()
    if local is not None:
        return Decision(
            (f"torch=={local}",), f"no NVIDIA GPU; pip has the CPU build {local} locally{replacing}"
        )
    return Decision(
        (f"torch=={pin}", "--index-url", CPU_INDEX),
        f"no NVIDIA GPU: the CPU build from PyTorch's CPU index{replacing}",
    )


def _parse_version(version: str) -> tuple[tuple[int, ...], bool]:
    """(release numbers, is a final or post release); the local label (+cpu) is ignored."""
    match = _VERSION.fullmatch(version.strip())
    if match is None:
        raise ValueError(f"not a version: {version!r}")
    release = tuple(int(part) for part in match.group(1).split("."))
    suffix = match.group(2)
    final = re.search(r"(a|b|c|rc|alpha|beta|pre|preview|dev)\d*", suffix) is None
    return release, final


def _padded(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)), b + (0,) * (width - len(b))


def satisfies(version: str, allowed: str) -> bool:
    """Whether `version` is in a range like ">=2.4,<2.14" (PEP 440's common operators).

    A pre-release (2.14.0a0) is below its release, so it satisfies neither ">=2.14" nor, as PEP
    440 has it, "<2.14". Only >=, >, <=, <, == and != (without wildcards) are supported.
    """
    release, final = _parse_version(version)
    for clause in allowed.split(","):
        match = _CLAUSE.fullmatch(clause)
        if match is None:
            raise ValueError(f"unsupported version clause {clause!r} in {allowed!r}")
        op, bound_text = match.groups()
        value, bound = _padded(release, tuple(int(p) for p in bound_text.split(".")))
        equal = value == bound and final
        ok = {
            ">=": value > bound or equal,
            ">": value > bound,
            "<=": value < bound or equal,
            "<": value < bound,
            "==": equal,
            "!=": not equal,
        }[op]
        if not ok:
            return False
    return True


def cpu_build_from_report(report: dict) -> str | None:
    """The version of the torch CPU build in a `pip install --report` JSON document, or None."""
    for item in report.get("install", []):
        metadata = item.get("metadata", {})
        version = str(metadata.get("version", ""))
        if metadata.get("name", "").lower() == "torch" and is_cpu_build(version):
            return version
    return None


def is_cpu_build(version: str) -> bool:
    """PyTorch labels its Linux CPU wheels with a `+cpu` local version (also `+cpu.cxx11.abi`)."""
    return version.partition("+")[2].startswith("cpu")


def torch_allowed_range(pyproject: Path) -> str:
    """pyproject.toml's torch requirement, e.g. ">=2.4,<2.14" (stdlib only: no tomllib on 3.10)."""
    match = re.search(r'^\s*"torch\s*([<>=!][^";]*)"', pyproject.read_text(), re.MULTILINE)
    if match is None:
        raise ValueError(f"{pyproject} has no torch requirement with a version range")
    return match.group(1).replace(" ", "")


def split_command(command: Sequence[str]) -> tuple[list[str], int, str]:
    """(pip executable part before `install`, index of the torch==PIN argument, PIN)."""
    if "install" not in command:
        raise ValueError(f"expected a `pip install ... torch==VERSION` command, got {command}")
    pins = [i for i, arg in enumerate(command) if _PIN.fullmatch(arg)]
    if len(pins) != 1:
        raise ValueError(f"expected exactly one torch==VERSION argument in {command}")
    pin_match = _PIN.fullmatch(command[pins[0]])
    assert pin_match is not None
    return list(command[: command.index("install")]), pins[0], pin_match.group(1)


def nvidia_gpu_present(root: Path = Path("/"), path: str | None = None) -> bool:
    """nvidia-smi on PATH (or `path`), or the NVIDIA driver's /proc entry or device node."""
    return (
        shutil.which("nvidia-smi", path=path) is not None
        or (root / "proc/driver/nvidia/version").exists()
        or (root / "dev/nvidia0").exists()
    )


def installed_torch() -> str | None:
    """The version of torch installed for this interpreter, or None (torch is not imported)."""
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def find_local_cpu_build(pip: Sequence[str], pin: str) -> str | None:
    """Ask pip, with no index (so no network), for a CPU build of torch==pin in its find-links."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        probe = [
            *pip,
            "install",
            "--dry-run",
            "--no-index",
            "--no-deps",
            "--ignore-installed",
            "--only-binary=:all:",
            "--quiet",
            "--report",
            str(report),
            f"torch=={pin}",
        ]
        try:
            done = subprocess.run(probe, capture_output=True, timeout=300, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if done.returncode != 0 or not report.exists():
            return None  # nothing local (pip says "no matching distribution"), or an old pip
        return cpu_build_from_report(json.loads(report.read_text()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dry-run", action="store_true", help="print the decision; install nothing"
    )
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    parser.add_argument("command", nargs="+", help="pip install ... torch==VERSION (after --)")
    args = parser.parse_args(argv)

    pip, at, pin = split_command(args.command)
    allowed = torch_allowed_range(args.pyproject)
    if not satisfies(pin, allowed):
        parser.error(f"the pin torch=={pin} is outside pyproject.toml's range {allowed}")
    decision = decide(
        pin=pin,
        allowed=allowed,
        installed=installed_torch(),
        gpu=nvidia_gpu_present(),
        torch_index=os.environ.get("TORCH_INDEX") or None,
        local_cpu_build=lambda: find_local_cpu_build(pip, pin),
    )
    if decision.args is None:
        print(f"torch: {decision.reason}; nothing to install", flush=True)
        return 0
    command = [*args.command[:at], *decision.args, *args.command[at + 1 :]]
    print(f"torch: {decision.reason}\n  {shlex.join(command)}", flush=True)
    if args.dry_run:
        return 0
    return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
