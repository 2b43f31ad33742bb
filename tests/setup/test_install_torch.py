"""scripts/install_torch.py: which torch build the set-up installs, decided without downloading."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "install_torch.py"

_spec = importlib.util.spec_from_file_location("install_torch", SCRIPT)
assert _spec is not None and _spec.loader is not None
install_torch = importlib.util.module_from_spec(_spec)
sys.modules["install_torch"] = install_torch  # dataclasses resolve annotations through it
_spec.loader.exec_module(install_torch)

PIN = "2.13.0"
ALLOWED = ">=2.4,<2.14"
MIRROR = "https://mirror.example/whl/cu126"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

# Expected pip arguments (None: keep the installed torch, run nothing).
KEEP = None
OVERRIDE = ("torch==2.13.0", "--index-url", MIRROR)
DEFAULT = ("torch==2.13.0",)  # pip's configured sources: PyPI's CUDA build on Linux
LOCAL_CPU = ("torch==2.13.0+cpu",)
CPU = ("torch==2.13.0", "--index-url", CPU_INDEX)

# Every combination of the inputs: GPU?, installed torch (none / in range / out of range),
# TORCH_INDEX, local CPU wheel → expected arguments, and whether the local probe may run pip.
TABLE = [
    # gpu    installed      TORCH_INDEX  local CPU wheel  expected   probed
    (False, None, None, None, CPU, True),
    (False, None, None, "2.13.0+cpu", LOCAL_CPU, True),
    (False, None, MIRROR, None, OVERRIDE, False),
    (False, None, MIRROR, "2.13.0+cpu", OVERRIDE, False),
    (False, "2.13.0+cpu", None, None, KEEP, False),
    (False, "2.13.0+cpu", None, "2.13.0+cpu", KEEP, False),
    (False, "2.13.0+cpu", MIRROR, None, KEEP, False),
    (False, "2.13.0+cpu", MIRROR, "2.13.0+cpu", KEEP, False),
    (False, "2.3.1", None, None, CPU, True),
    (False, "2.3.1", None, "2.13.0+cpu", LOCAL_CPU, True),
    (False, "2.3.1", MIRROR, None, OVERRIDE, False),
    (False, "2.3.1", MIRROR, "2.13.0+cpu", OVERRIDE, False),
    (True, None, None, None, DEFAULT, False),
    (True, None, None, "2.13.0+cpu", DEFAULT, False),
    (True, None, MIRROR, None, OVERRIDE, False),
    (True, None, MIRROR, "2.13.0+cpu", OVERRIDE, False),
    (True, "2.13.0+cpu", None, None, KEEP, False),
    (True, "2.13.0+cpu", None, "2.13.0+cpu", KEEP, False),
    (True, "2.13.0+cpu", MIRROR, None, KEEP, False),
    (True, "2.13.0+cpu", MIRROR, "2.13.0+cpu", KEEP, False),
    (True, "2.3.1", None, None, DEFAULT, False),
    (True, "2.3.1", None, "2.13.0+cpu", DEFAULT, False),
    (True, "2.3.1", MIRROR, None, OVERRIDE, False),
    (True, "2.3.1", MIRROR, "2.13.0+cpu", OVERRIDE, False),
]


def _decide(
    installed: str | None, gpu: bool, index: str | None, local: str | None
) -> tuple[object, int]:
    """decide() with a counting stand-in for the pip probe; returns (decision, probe calls)."""
    calls = []

    def probe() -> str | None:
        calls.append(1)
        return local

    decision = install_torch.decide(
        pin=PIN,
        allowed=ALLOWED,
        installed=installed,
        gpu=gpu,
        torch_index=index,
        local_cpu_build=probe,
    )
    return decision, len(calls)


def test_the_table_covers_every_combination_once() -> None:
    keys = [row[:4] for row in TABLE]
    expected = itertools.product(
        (False, True), (None, "2.13.0+cpu", "2.3.1"), (None, MIRROR), (None, "2.13.0+cpu")
    )
    assert sorted(keys, key=repr) == sorted(expected, key=repr)


@pytest.mark.parametrize(("gpu", "installed", "index", "local", "expected", "probed"), TABLE)
def test_decision(
    gpu: bool,
    installed: str | None,
    index: str | None,
    local: str | None,
    expected: tuple[str, ...] | None,
    probed: bool,
) -> None:
    decision, calls = _decide(installed, gpu, index, local)
    assert decision.args == expected
    # The probe runs pip, so it runs only when the answer depends on it, and at most once.
    assert calls == (1 if probed else 0)
    if installed is not None and expected is not None:
        assert f"replacing torch {installed}" in decision.reason


@pytest.mark.parametrize("installed", ["2.4.0", "2.12.1", "2.13.0", "2.13.0+cpu", "2.13.1+cu126"])
def test_any_installed_torch_in_the_range_is_kept_whatever_its_build(installed: str) -> None:
    decision, calls = _decide(installed, gpu=False, index=None, local=None)
    assert decision.args is None and calls == 0
    assert installed in decision.reason


@pytest.mark.parametrize("installed", ["2.3.1", "2.4.0rc1", "2.14.0", "2.14.0a0+gitabc", "3.0"])
def test_a_torch_outside_the_range_is_replaced_by_the_pin(installed: str) -> None:
    decision, _ = _decide(installed, gpu=False, index=None, local="2.13.0+cpu")
    assert decision.args == LOCAL_CPU


@pytest.mark.parametrize(
    ("version", "allowed", "expected"),
    [
        ("2.13.0+cpu", ">=2.4,<2.14", True),
        ("2.4", ">=2.4,<2.14", True),
        ("2.4.0.post1", ">=2.4,<2.14", True),
        ("2.14.0", ">=2.4,<2.14", False),
        ("2.14.0a0+git1234", ">=2.4,<2.14", False),
        ("2.4.0rc1", ">=2.4,<2.14", False),
        ("2.3.99", ">=2.4,<2.14", False),
        ("2.13.0+cpu", "==2.13", True),
        ("2.13.0", "!=2.13.0", False),
        ("2.13.1", "<=2.13.1, >2.13", True),
    ],
)
def test_satisfies(version: str, allowed: str, expected: bool) -> None:
    assert install_torch.satisfies(version, allowed) is expected


@pytest.mark.parametrize("allowed", ["~=2.4", ">=2.*", "torch>=2"])
def test_unsupported_ranges_are_refused_not_guessed(allowed: str) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        install_torch.satisfies("2.13.0", allowed)


def test_cpu_builds_are_recognised_by_their_local_label() -> None:
    assert install_torch.is_cpu_build("2.13.0+cpu")
    assert install_torch.is_cpu_build("2.3.1+cpu.cxx11.abi")
    assert not install_torch.is_cpu_build("2.13.0")
    assert not install_torch.is_cpu_build("2.13.0+cu126")


def _report(name: str, version: str) -> dict:
    """The part of a `pip install --dry-run --report` document that the script reads."""
    url = f"file:///opt/wheels/{name}-{version}-cp311-cp311-manylinux_2_28_x86_64.whl"
    return {
        "version": "1",
        "install": [
            {"download_info": {"url": url}, "metadata": {"name": name, "version": version}}
        ],
    }


def test_the_probe_report_yields_only_a_cpu_torch() -> None:
    assert install_torch.cpu_build_from_report(_report("torch", "2.13.0+cpu")) == "2.13.0+cpu"
    assert install_torch.cpu_build_from_report(_report("torch", "2.13.0")) is None
    assert install_torch.cpu_build_from_report(_report("torchvision", "0.28.0+cpu")) is None
    assert install_torch.cpu_build_from_report({"version": "1", "install": []}) is None


def _fake_pip(tmp_path: Path, report: dict | None) -> list[str]:
    """A stand-in for pip that records its arguments and writes `report` (None: exits 1)."""
    script = tmp_path / "fake_pip.py"
    script.write_text(
        "import json, sys\n"
        f"open({str(tmp_path / 'args.json')!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
        f"report = {json.dumps(report)!r}\n"
        "if report == 'null':\n"
        "    sys.exit(1)\n"
        "open(sys.argv[sys.argv.index('--report') + 1], 'w').write(report)\n"
    )
    return [sys.executable, str(script)]


def test_the_probe_asks_pip_without_an_index_and_installs_nothing(tmp_path: Path) -> None:
    pip = _fake_pip(tmp_path, _report("torch", "2.13.0+cpu"))
    assert install_torch.find_local_cpu_build(pip, PIN) == "2.13.0+cpu"
    args = json.loads((tmp_path / "args.json").read_text())
    assert args[0] == "install" and args[-1] == "torch==2.13.0"
    assert {"--dry-run", "--no-index", "--no-deps", "--ignore-installed"} <= set(args)


def test_the_probe_finds_nothing_when_pip_finds_nothing(tmp_path: Path) -> None:
    assert install_torch.find_local_cpu_build(_fake_pip(tmp_path, None), PIN) is None
    assert install_torch.find_local_cpu_build([str(tmp_path / "no-such-pip")], PIN) is None


def test_a_gpu_is_detected_by_nvidia_smi_or_the_driver_files(tmp_path: Path) -> None:
    bin_dir, root = tmp_path / "bin", tmp_path / "root"
    bin_dir.mkdir()
    root.mkdir()
    assert not install_torch.nvidia_gpu_present(root, path=str(bin_dir))

    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\n")
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR)
    assert install_torch.nvidia_gpu_present(root, path=str(bin_dir))
    smi.unlink()

    for driver_file in ("proc/driver/nvidia/version", "dev/nvidia0"):
        (root / driver_file).parent.mkdir(parents=True, exist_ok=True)
        (root / driver_file).write_text("")
        assert install_torch.nvidia_gpu_present(root, path=str(bin_dir)), driver_file
        (root / driver_file).unlink()


def test_the_pip_command_is_split_around_the_pin() -> None:
    command = [".venv/bin/pip", "install", "-q", "torch==2.13.0"]
    assert install_torch.split_command(command) == ([".venv/bin/pip"], 3, "2.13.0")
    command = ["python", "-m", "pip", "install", "torch==2.13.0", "-q"]
    assert install_torch.split_command(command) == (["python", "-m", "pip"], 4, "2.13.0")
    for bad in (["pip", "install", "torch"], ["pip", "download", "torch==2.13.0"]):
        with pytest.raises(ValueError):
            install_torch.split_command(bad)


def test_the_makefile_pin_is_in_pyprojects_range_and_the_dockerfile_agrees() -> None:
    pin = re.search(
        r"^TORCH_INSTALL := .* torch==([0-9.]+)$", (ROOT / "Makefile").read_text(), re.M
    )
    assert pin, "the Makefile's torch step installs a pinned torch"
    allowed = install_torch.torch_allowed_range(ROOT / "pyproject.toml")
    assert install_torch.satisfies(pin.group(1), allowed)
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text().splitlines()
    assert f"ARG TORCH_INDEX={install_torch.CPU_INDEX}" in dockerfile  # same default CPU index


def _dry_run(*python_options: str, torch_index: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TORCH_INDEX"}
    if torch_index is not None:
        env["TORCH_INDEX"] = torch_index
    pip = [sys.executable, "-m", "pip", "install", "-q", f"torch=={PIN}"]
    done = subprocess.run(
        [sys.executable, *python_options, str(SCRIPT), "--dry-run", "--", *pip],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    return done.stdout


def test_dry_run_keeps_the_torch_this_environment_has() -> None:
    installed = install_torch.installed_torch()
    assert installed is not None  # the tests run with torch installed
    assert _dry_run(torch_index=MIRROR) == (
        f"torch: keeping the installed torch {installed} (in {ALLOWED}); nothing to install\n"
    )


def test_dry_run_without_torch_prints_the_pip_command_it_would_run() -> None:
    # -S hides site-packages, so the script sees no installed torch; --dry-run installs nothing.
    out = _dry_run("-S", torch_index=MIRROR)
    assert out.startswith("torch: TORCH_INDEX is set\n")
    assert out.rstrip().endswith(f"-m pip install -q torch=={PIN} --index-url {MIRROR}")

    # Without the override the answer depends on the machine, never on the network:
    out = _dry_run("-S")
    if install_torch.nvidia_gpu_present():
        assert out.rstrip().endswith(f" torch=={PIN}")
    elif "locally" in out:  # the build machines: pip has the CPU wheel in its find-links
        assert out.rstrip().endswith(f" torch=={PIN}+cpu")
    else:  # a normal machine: PyTorch's CPU index
        assert out.rstrip().endswith(f" torch=={PIN} --index-url {CPU_INDEX}")
