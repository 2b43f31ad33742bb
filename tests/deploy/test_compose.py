"""docker/compose.yaml (learner, two replicas, Prometheus) without an engine: the Compose
specification's schema, and every port, path, command, flag and variable it names."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from service.api.rest.routes.health import router as health_router
from service.settings import ENV_PREFIX, Settings
from tests.support.deploy import (
    FOLLOW,
    PROGRAM,
    ROOT,
    check_command,
    effective_settings,
    follow_lands_with_the_replica_branch,
    image_settings,
    load_yaml,
    run_offline,
    setting_of_variable,
    unknown_names,
)

COMPOSE = ROOT / "docker" / "compose.yaml"
SERVERS = ("learner", "replica-1", "replica-2")
REPLICAS = ("replica-1", "replica-2")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _validate(path: Path) -> tuple[int, str]:
    argv = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    done = run_offline([*argv, str(path)])
    return done.returncode, done.stdout + done.stderr


def test_compose_file_matches_the_compose_specification_offline() -> None:
    code, output = _validate(COMPOSE)
    assert code == 0, output


def test_the_schema_check_catches_a_mistake(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    text = COMPOSE.read_text()
    broken.write_text(text.replace("    restart: unless-stopped\n", "    restrat: x\n"))
    code, output = _validate(broken)
    assert code == 1 and "restrat" in output, output


def _image(service: dict[str, Any]) -> Path:
    return ROOT / service["build"]["dockerfile"]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {name: str(value) for name, value in environment.items()}


def _command(service: dict[str, Any]) -> list[str]:
    """The full command line: entry point (the image's unless overridden) + command."""
    entrypoint = service.get("entrypoint", [PROGRAM, "serve"])
    return [*entrypoint, *service.get("command", [])]


def _values(service: dict[str, Any]) -> dict[str, str]:
    """{setting: text} the container runs with: image ENV, then environment, then flags."""
    values = image_settings(_image(service))
    for name, value in _environment(service).items():
        if name.startswith(ENV_PREFIX):
            values[name.removeprefix(ENV_PREFIX).lower()] = value
    command = _command(service)
    if command[1:2] == ["serve"]:
        values.update(check_command(command))
    return values


def _settings(service: dict[str, Any]) -> Settings:
    return effective_settings(_values(service))


def test_a_learner_two_replicas_and_prometheus(services: dict[str, Any]) -> None:
    assert set(SERVERS) | {"prometheus"} <= set(services)
    for name in SERVERS:
        assert _command(services[name]) == [PROGRAM, "serve"], name
    for name in REPLICAS:
        assert f"{ENV_PREFIX}FOLLOW" in _environment(services[name]), name
    assert f"{ENV_PREFIX}FOLLOW" not in _environment(services["learner"])


def test_every_image_build_and_mounted_file_exists(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if "build" in service:
            context = (COMPOSE.parent / service["build"]["context"]).resolve()
            assert context == ROOT, name
            assert (context / service["build"]["dockerfile"]).exists(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: {volume}"


def test_named_volumes_are_declared_and_dependencies_exist(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in compose["volumes"], f"{name}: {volume}"
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on {dependency}"


def test_every_variable_and_flag_is_a_setting(services: dict[str, Any]) -> None:
    """Except `follow`, checked by the test below."""
    unknown = []
    for name, service in services.items():
        if "build" in service:  # not Prometheus
            names = unknown_names(_environment(service), _command(service))
            unknown += [f"{name}: {what}" for what in names]
    assert unknown == []


@follow_lands_with_the_replica_branch
def test_replicas_follow_with_a_real_setting(services: dict[str, Any]) -> None:
    for name in REPLICAS:
        assert setting_of_variable(f"{ENV_PREFIX}FOLLOW") == FOLLOW, name
        assert _settings(services[name]).follow  # type: ignore[attr-defined]


def test_every_value_is_a_valid_setting(services: dict[str, Any]) -> None:
    for name in SERVERS:
        settings = _settings(services[name])
        assert settings.host == "0.0.0.0" and settings.rest_host == "0.0.0.0", name
        # REST answers by the service's own name (and the host's loopback, for published ports)
        assert name in settings.rest_allowed_hosts, name


def test_the_export_model_step_is_a_real_command_into_the_served_repository(
    services: dict[str, Any],
) -> None:
    step = services["export-model"]
    command = _command(step)
    check_command(command)  # SystemExit for an unknown subcommand or option
    assert command[1] == "export-model"
    destination = Path(command[2])
    assert any(volume.endswith(f":{destination.parent}") for volume in step["volumes"])
    for name in SERVERS:
        repository = _settings(services[name]).model_repository
        assert repository == destination.parent, name
        assert services[name]["depends_on"], name


def test_every_published_port_is_one_the_server_listens_on(services: dict[str, Any]) -> None:
    host_ports: list[str] = []
    for name in SERVERS:
        settings = _settings(services[name])
        published = {}
        for mapping in services[name]["ports"]:
            *host, container = str(mapping).split(":")
            published[int(container)] = host
            host_ports.append(":".join(host))
        assert set(published) == {settings.port, settings.rest_port}, name
        for host in published.values():
            assert host[0] == "127.0.0.1", f"{name}: plaintext without tokens: loopback only"
    assert len(host_ports) == len(set(host_ports)), "two services publish the same host port"


def test_replicas_follow_the_learners_grpc_port(services: dict[str, Any]) -> None:
    learner_port = _settings(services["learner"]).port
    for name in REPLICAS:
        target = _environment(services[name])[f"{ENV_PREFIX}FOLLOW"]
        assert target == f"learner:{learner_port}", name
        assert services[name]["depends_on"]["learner"]["condition"] == "service_healthy"


def test_prometheus_scrapes_every_server_at_metrics(services: dict[str, Any]) -> None:
    prometheus = services["prometheus"]
    (mount,) = prometheus["volumes"]
    source, target, *_ = mount.split(":")
    assert target == "/etc/prometheus/prometheus.yml"  # the image's default configuration file
    config = load_yaml(COMPOSE.parent / source)
    scraped = set()
    routes = {route.path for route in health_router.routes}  # type: ignore[attr-defined]
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        assert job.get("scheme", "http") == "http"
        for static in job["static_configs"]:
            scraped.update(static["targets"])
    assert "/metrics" in routes
    expected = {f"{name}:{_settings(services[name]).rest_port}" for name in SERVERS}
    assert scraped == expected


def test_the_image_health_check_is_what_compose_relies_on(services: dict[str, Any]) -> None:
    # `service_healthy` uses the image's HEALTHCHECK (gRPC health SERVING); no service
    # overrides it except the one-shot step that serves nothing
    for name, service in services.items():
        if "healthcheck" in service:
            assert name == "export-model" and service["healthcheck"] == {"disable": True}


def _docker_compose() -> bool:
    docker = shutil.which("docker")
    return docker is not None and run_offline([docker, "compose", "version"]).returncode == 0


@pytest.mark.skipif(not _docker_compose(), reason="no `docker compose` plugin here")
def test_docker_compose_config_accepts_the_file() -> None:
    # `config` resolves and checks the file without an engine
    done = run_offline(["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"])
    assert done.returncode == 0, done.stderr
