"""The README's "Docker" and "Scaling out" sections: every command works as written as far as
can be told without an engine (each image, port, volume, subcommand, flag and variable is
real), and the metrics they name are the server's."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from service.settings import ENV_PREFIX
from tests.support.deploy import (
    FOLLOW,
    PROGRAM,
    ROOT,
    check_command,
    effective_settings,
    exposition,
    follow_lands_with_the_replica_branch,
    image_settings,
    serve_flags,
    setting_of_variable,
)

README = ROOT / "README.md"
REPLICA_METRICS = (
    "advantage_replica_versions_behind",
    "advantage_replica_seconds_since_sync",
    "advantage_replica_connected",
)
#: `docker run` options that take a value (the ones the README uses, and a few more).
VALUED = {"-p", "-v", "-e", "--entrypoint", "--name", "--gpus", "--health-cmd", "--network"}


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _shell_lines(section: str) -> list[list[str]]:
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                lines.append(words)
    return lines


def _builds() -> dict[str, Path]:
    """Image tag → the Dockerfile the README builds it from."""
    builds = {}
    for words in _shell_lines(_section("Docker")):
        if words[:2] == ["docker", "build"]:
            dockerfile = ROOT / words[words.index("-f") + 1]
            assert dockerfile.exists(), words
            assert words[-1] == ".", "the build context is the repository root"
            builds[words[words.index("-t") + 1]] = dockerfile
    return builds


def _runs() -> list[dict[str, object]]:
    runs = []
    for words in _shell_lines(_section("Docker")):
        if words[:2] != ["docker", "run"]:
            continue
        options: dict[str, list[str]] = {}
        index = 2
        while words[index].startswith("-"):
            if words[index] in VALUED:
                options.setdefault(words[index], []).append(words[index + 1])
                index += 2
            else:
                options.setdefault(words[index], []).append("")
                index += 1
        runs.append({"options": options, "image": words[index], "args": words[index + 1 :]})
    return runs


def test_the_docker_section_builds_both_images_and_runs_them() -> None:
    builds = _builds()
    assert {path.name for path in builds.values()} == {"Dockerfile", "Dockerfile.cuda"}
    runs = _runs()
    assert {run["image"] for run in runs} == set(builds)
    # the first run needs nothing else: the built-in demo model
    first = runs[0]
    assert first["args"] == [] and "-v" not in first["options"]  # type: ignore[operator]


def test_every_docker_run_names_real_ports_variables_and_commands() -> None:
    builds = _builds()
    served_from: dict[str, Path] = {}
    exported_to: dict[str, Path] = {}
    for run in _runs():
        options: dict[str, list[str]] = run["options"]  # type: ignore[assignment]
        args: list[str] = run["args"]  # type: ignore[assignment]
        values = image_settings(builds[run["image"]])  # type: ignore[index]
        for assignment in options.get("-e", []):
            name, _, value = assignment.partition("=")
            assert setting_of_variable(name), assignment
            values[name.removeprefix(ENV_PREFIX).lower()] = value
        volumes = dict(volume.split(":")[:2] for volume in options.get("-v", []))
        if "--entrypoint" in options:
            (entrypoint,) = options["--entrypoint"]
            assert entrypoint == PROGRAM
            check_command([PROGRAM, *args])
            if args[0] == "export-model":
                (volume,) = [v for v, path in volumes.items() if args[1].startswith(path + "/")]
                exported_to[volume] = Path(args[1])
            continue
        values.update(check_command([PROGRAM, "serve", *args]))
        settings = effective_settings(values)
        for mapping in options.get("-p", []):
            container = mapping.split(":")[-1]
            assert int(container) in {settings.port, settings.rest_port}, mapping
        if settings.model_repository is not None:
            (volume,) = [v for v, path in volumes.items() if path == str(settings.model_repository)]
            served_from[volume] = settings.model_repository
    # the exported demo model lands in the repository that a later run serves
    assert exported_to and served_from
    for volume, model_folder in exported_to.items():
        assert model_folder.parent == served_from[volume]


def test_the_compose_and_kubernetes_commands_name_files_that_exist() -> None:
    named = 0
    for words in _shell_lines(_section("Docker")):
        if words[:2] == ["docker", "compose"]:
            assert (ROOT / words[words.index("-f") + 1]).is_file(), words
            named += 1
        if words[:2] == ["kubectl", "apply"]:
            assert (ROOT / words[words.index("-k") + 1] / "kustomization.yaml").is_file()
            named += 1
    assert named == 2


def test_every_variable_and_flag_named_is_a_setting() -> None:
    """Except `follow`, checked by the test below."""
    text = _section("Docker") + _section("Scaling out")
    variables = set(re.findall(r"\bADVANTAGE_[A-Z_]+\b", text)) - {f"{ENV_PREFIX}FOLLOW"}
    assert variables
    assert [name for name in sorted(variables) if setting_of_variable(name) is None] == []
    flags = {match for match in re.findall(r"`(--[a-z-]+)", text)}
    known = set(serve_flags()) | {"--build-arg", "--health-cmd", "--client-cert", "--client-key"}
    assert sorted(flags - known - {"--" + FOLLOW.replace("_", "-")}) == []


def test_the_scaling_out_section_says_when_what_and_how() -> None:
    text = _section("Scaling out")
    for words in ("When to add replicas", "What consistency a client gets", "How to watch lag"):
        assert words.lower() in text.lower(), words
    for metric in REPLICA_METRICS:
        assert f"`{metric}" in text, metric
    assert "--follow" in text and f"{ENV_PREFIX}FOLLOW" in text
    assert "dns:///advantage-replicas:50051" in text


def test_every_other_metric_named_is_exported() -> None:
    exported = exposition()
    text = _section("Docker") + _section("Scaling out")
    named = set(re.findall(r"\badvantage_[a-z_]+\b", text)) - set(REPLICA_METRICS)
    assert named
    for metric in sorted(named):
        assert f"# TYPE {metric} " in exported, metric


@follow_lands_with_the_replica_branch
def test_follow_and_the_replica_metrics_are_the_servers() -> None:
    assert "--follow" in serve_flags()
    assert setting_of_variable(f"{ENV_PREFIX}FOLLOW") == FOLLOW
    source = "\n".join(path.read_text() for path in (ROOT / "service").rglob("*.py"))
    missing = [metric for metric in REPLICA_METRICS if f'"{metric}"' not in source]
    assert missing == []


ALERTS = re.findall(r"^(\S.*\(advantage_\w+\).*)$", _section("Scaling out"), re.M)


@pytest.mark.parametrize("query", ALERTS)
def test_the_alert_queries_use_the_replica_metrics(query: str) -> None:
    (metric,) = re.findall(r"\(?(advantage_\w+)\)", query)
    assert metric in REPLICA_METRICS
