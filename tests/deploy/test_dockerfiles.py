"""docker/Dockerfile (CPU) and docker/Dockerfile.cuda, checked without a Docker engine: hadolint
parses and lints them, and every port, path, variable and command they name is the server's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.settings import ENV_PREFIX, Settings
from tests.support.deploy import (
    DOCKERFILES,
    PROGRAM,
    ROOT,
    dockerfile,
    dockerignore_allows,
    dockerignore_patterns,
    effective_settings,
    image_settings,
    run_offline,
    setting_of_variable,
    tool,
)

CPU, CUDA = DOCKERFILES
each_image = pytest.mark.parametrize("path", DOCKERFILES, ids=lambda path: path.name)


@each_image
def test_hadolint_passes(path: Path) -> None:
    done = run_offline([tool("hadolint"), "--no-color", str(path)], cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


@each_image
def test_multi_stage_venv_copied_into_a_runtime_stage_that_runs_as_a_user(path: Path) -> None:
    image = dockerfile(path)
    stages = image.all("FROM")
    assert len(stages) == 2, stages
    assert stages[0].endswith(" AS builder") and stages[1].endswith(" AS runtime"), stages
    runtime = image.final_stage
    assert "--from=builder /opt/venv /opt/venv" in image.all("COPY", runtime)
    # the runtime stage installs nothing: no compiler, no pip cache, no source tree
    assert not [run for run in image.all("RUN", runtime) if "pip install" in run]
    (user,) = image.all("USER", runtime)
    uid = user.split(":")[0]
    # numeric, so Kubernetes' runAsNonRoot can verify it; and the one the manifests run as
    assert uid.isdigit() and int(uid) != 0, user
    assert uid == "10001"
    assert "--uid 10001" in " ".join(image.all("RUN", runtime))


@each_image
def test_both_ports_exposed_and_set_through_variables_the_server_reads(path: Path) -> None:
    image = dockerfile(path)
    exposed = {int(port) for ports in image.all("EXPOSE") for port in ports.split()}
    settings = effective_settings(image_settings(path))
    assert exposed == {settings.port, settings.rest_port} == {50051, 8080}
    # every interface in the container, as variables so that `-e ADVANTAGE_PORT=…` works
    assert settings.host == "0.0.0.0" and settings.rest_host == "0.0.0.0"
    # REST keeps its Host allow-list default (loopback names): not "*" baked into the image
    assert settings.rest_allowed_hosts is None


@each_image
def test_every_advantage_variable_is_a_setting(path: Path) -> None:
    names = [name for name in dockerfile(path).env() if name.startswith(ENV_PREFIX)]
    assert names
    assert [name for name in names if setting_of_variable(name) is None] == []


@each_image
def test_entry_point_is_serve_without_flags_so_variables_apply(path: Path) -> None:
    # a flag in the entry point would win over the ADVANTAGE_* variable of the same setting
    assert dockerfile(path).exec_form("ENTRYPOINT") == [PROGRAM, "serve"]
    assert not dockerfile(path).all("CMD")


@each_image
def test_healthcheck_runs_the_health_check_module(path: Path) -> None:
    image = dockerfile(path)
    command = image.exec_form("HEALTHCHECK")
    assert command == ["python", "-m", "service.api.healthcheck"]
    module = ROOT / (command[2].replace(".", "/") + ".py")
    assert module.exists()
    options = image.healthcheck_options()
    # the start period covers model loading and kernel warm-up; a check's own timeout (3 s)
    # fits in Docker's
    assert {"interval", "timeout", "start-period", "retries"} <= set(options)
    assert int(options["timeout"].removesuffix("s")) > 3


@each_image
def test_every_copied_path_exists_and_passes_dockerignore(path: Path) -> None:
    patterns = dockerignore_patterns()
    sources = []
    for arguments in dockerfile(path).all("COPY"):
        words = [word for word in arguments.split() if not word.startswith("--")]
        if "--from=" in arguments:
            continue
        sources += words[:-1]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert dockerignore_allows(source, patterns), f"{source} is excluded by .dockerignore"
    # and what never belongs in a build context stays out
    for unwanted in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "models/demo"):
        assert not dockerignore_allows(unwanted, patterns), unwanted
    assert not dockerignore_allows("service/__pycache__/cli.cpython-311.pyc", patterns)


def test_the_dockerignore_reader_follows_dockers_rules() -> None:
    patterns = ["*", "!service", "**/__pycache__"]
    assert dockerignore_allows("service/api/auth.py", patterns)
    assert not dockerignore_allows("README.md", patterns)
    assert not dockerignore_allows("service/api/__pycache__/auth.pyc", patterns)


@each_image
def test_torch_is_the_makefiles_pin_installed_before_the_server(path: Path) -> None:
    pinned = re.search(r"pip install [^\n]*torch==([0-9.]+)", (ROOT / "Makefile").read_text())
    assert pinned
    image = dockerfile(path)
    assert image.args()["TORCH_VERSION"] == pinned.group(1)
    installs = [run for run in image.all("RUN") if "pip install" in run]
    assert installs[0].startswith('pip install "torch==${TORCH_VERSION}"')
    assert installs[1] == "pip install ."
    # the constraint keeps `pip install .` from swapping the torch build for another
    assert 'echo "torch==${TORCH_VERSION}" > /opt/torch-constraint.txt' in installs[0]
    assert image.env(0)["PIP_CONSTRAINT"] == "/opt/torch-constraint.txt"


def test_the_cpu_image_takes_torch_from_the_cpu_index_and_refuses_a_cuda_build() -> None:
    image = dockerfile(CPU)
    assert image.args()["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    (install,) = [run for run in image.all("RUN") if "torch==" in run and "pip install" in run]
    assert '--index-url "${TORCH_INDEX}"' in install
    assert "if torch.version.cuda else 0" in install  # a CUDA build fails the build
    assert "NVIDIA_VISIBLE_DEVICES" not in image.env()


def test_the_cuda_image_takes_a_cuda_build_and_asks_for_the_gpus() -> None:
    image = dockerfile(CUDA)
    assert "cpu" not in image.args()["TORCH_INDEX"]
    (install,) = [run for run in image.all("RUN") if "torch==" in run and "pip install" in run]
    assert "sys.exit(0 if torch.version.cuda else" in install  # a CPU build fails the build
    env = image.env()
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert "compute" in env["NVIDIA_DRIVER_CAPABILITIES"].split(",")


def test_the_two_images_differ_only_in_torch_and_the_gpu_variables() -> None:
    cpu, cuda = dockerfile(CPU), dockerfile(CUDA)
    same = ("FROM", "COPY", "USER", "WORKDIR", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT")
    for keyword in same:
        assert cpu.all(keyword) == cuda.all(keyword), keyword
    gpu_only = {"NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES"}
    cuda_env = {k: v for k, v in cuda.env().items() if k not in gpu_only}
    assert cpu.env() == cuda_env


@each_image
def test_image_defaults_make_valid_settings(path: Path) -> None:
    settings = effective_settings(image_settings(path))
    assert isinstance(settings, Settings)
    assert settings.model_repository is None  # no repository: the built-in demo model
