"""Reading the deployment files the way Docker, Compose and Kubernetes would, without them.

The names the files use are checked against `service.settings.Settings` (each setting is the
flag `--x-y` and the variable `ADVANTAGE_X_Y`), so a setting that lands later, like the replica
branch's `follow`, is recognised as soon as it exists.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from service.settings import ENV_PREFIX, Settings, flag, flag_fields

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = (ROOT / "docker" / "Dockerfile", ROOT / "docker" / "Dockerfile.cuda")
PROGRAM = "advantage-service"

#: The replica branch's setting: `serve --follow LEARNER_ADDRESS` / ADVANTAGE_FOLLOW.
FOLLOW = "follow"
HAS_FOLLOW = FOLLOW in Settings.model_fields
#: For the assertions about `--follow` only: expected to fail until the replica branch merges,
#: then they run as plain tests (strict: an unexpected pass before that is a failure).
follow_lands_with_the_replica_branch = pytest.mark.xfail(
    FOLLOW not in Settings.model_fields,
    reason="--follow lands with the replica branch",
    strict=True,
)


# ---- settings ---------------------------------------------------------------------------------


def setting_of_variable(name: str) -> str | None:
    """The Settings field that `ADVANTAGE_X_Y` sets, or None when there is none."""
    if not name.startswith(ENV_PREFIX):
        return None
    field_name = name.removeprefix(ENV_PREFIX).lower()
    return field_name if field_name in Settings.model_fields else None


def serve_flags() -> dict[str, str]:
    """Every flag of `advantage-service serve` → its setting (`--no-x` for booleans too)."""
    flags = {}
    for name, info in flag_fields().items():
        flags[flag(name)] = name
        if info.annotation is bool:
            flags["--no-" + name.replace("_", "-")] = name
    return flags


def flag_setting(token: str) -> str:
    """The setting a `--flag` or `--flag=value` names, known or not (`--follow` → "follow")."""
    name = token.removeprefix("--").split("=", 1)[0]
    return name.removeprefix("no-").replace("-", "_")


def serve_arguments(args: Sequence[str]) -> dict[str, str]:
    """`serve` arguments → {setting: value}; every token must be a flag or a flag's value."""
    known = serve_flags()
    given: dict[str, str] = {}
    index = 0
    while index < len(args):
        token = args[index]
        assert token.startswith("--"), f"serve takes only flags, got {token!r} in {args}"
        name = token.split("=", 1)[0]
        setting = known.get(name, flag_setting(token))
        is_bool = name in known and flag_fields()[setting].annotation is bool
        if "=" in token:
            given[setting] = token.split("=", 1)[1]
        elif is_bool:
            given[setting] = "false" if name.startswith("--no-") else "true"
        else:
            assert index + 1 < len(args), f"{token} needs a value in {args}"
            given[setting] = args[index + 1]
            index += 1
        index += 1
    return given


def unknown_names(variables: Iterable[str], tokens: Iterable[str]) -> list[str]:
    """The `ADVANTAGE_*` variables and `--flags` that name no setting, `follow` aside (the
    tests marked `follow_lands_with_the_replica_branch` check that one)."""
    unknown = [
        name
        for name in variables
        if name.startswith(ENV_PREFIX)
        and name != ENV_PREFIX + FOLLOW.upper()
        and setting_of_variable(name) is None
    ]
    unknown += [
        token
        for token in tokens
        if token.startswith("--")
        and flag_setting(token) != FOLLOW
        and flag_setting(token) not in Settings.model_fields
    ]
    return unknown


def exposition() -> str:
    """The Prometheus text of a server's metrics (a Metrics over the demo model)."""
    import torch

    from service.api.metrics import Metrics
    from service.models.demo import demo_model
    from service.models.registry import ModelRegistry

    metrics = Metrics(ModelRegistry({"demo": demo_model(torch.device("cpu"))}))
    return metrics.exposition().decode()


def effective_settings(values: Mapping[str, str]) -> Settings:
    """Settings from {setting: text}, as the server would build them (unknown names dropped:
    the tests that name them check them separately)."""
    known = {name: value for name, value in values.items() if name in Settings.model_fields}
    return Settings(**known)


def check_command(argv: Sequence[str]) -> dict[str, str]:
    """Check an `advantage-service …` command line; for `serve`, return its {setting: value}.

    The subcommand and its options must be the CLI's own (argparse's parser, not a copy).
    """
    from service.cli import _parser

    assert Path(argv[0]).name == PROGRAM, argv
    if argv[1:2] == ["serve"]:
        return serve_arguments(argv[2:])
    _parser().parse_args(list(argv[1:]))  # SystemExit on an unknown subcommand or option
    return {}


def commands_in_shell(script: str) -> list[list[str]]:
    """The `advantage-service …` commands in a `sh -c` script (split on && || ; |)."""
    commands, current = [], []
    for token in [*shlex.split(script), ";"]:
        if token in ("&&", "||", ";", "|"):
            if current:
                commands.append(current)
            current = []
        else:
            current.append(token)
    found = []
    for words in commands:
        while words and words[0] in ("exec", "env", "command"):
            words = words[1:]
        if words and Path(words[0]).name == PROGRAM:
            found.append(words)
    return found


# ---- Dockerfiles ------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str  # upper case
    arguments: str  # continuation lines joined
    stage: int  # index of the FROM it belongs to


@dataclass
class Dockerfile:
    path: Path
    instructions: list[Instruction] = field(default_factory=list)

    def __post_init__(self) -> None:
        logical, stage = "", -1
        for raw in self.path.read_text().splitlines():
            line = raw.strip()
            if not logical and (not line or line.startswith("#")):
                continue
            if logical and line.startswith("#"):
                continue  # a comment inside a continued instruction
            if line.endswith("\\"):
                logical += line[:-1] + " "
                continue
            logical += line
            keyword, _, arguments = logical.partition(" ")
            keyword = keyword.upper()
            if keyword == "FROM":
                stage += 1
            self.instructions.append(Instruction(keyword, arguments.strip(), stage))
            logical = ""

    def all(self, keyword: str, stage: int | None = None) -> list[str]:
        return [
            i.arguments
            for i in self.instructions
            if i.keyword == keyword and (stage is None or i.stage == stage)
        ]

    @property
    def final_stage(self) -> int:
        return self.instructions[-1].stage

    def env(self, stage: int | None = None) -> dict[str, str]:
        """ENV of a stage (the final one by default), `ENV A=1 B=2` form."""
        values = {}
        stage = self.final_stage if stage is None else stage
        for arguments in self.all("ENV", stage):
            for pair in shlex.split(arguments):
                name, equals, value = pair.partition("=")
                assert equals, f"{self.path.name}: ENV {arguments!r}: use the NAME=value form"
                values[name] = value
        return values

    def args(self) -> dict[str, str]:
        """ARG defaults, across stages."""
        values = {}
        for arguments in self.all("ARG"):
            name, _, value = arguments.partition("=")
            values[name] = value
        return values

    def exec_form(self, keyword: str) -> list[str]:
        """The JSON (exec) form of the last ENTRYPOINT/CMD, or of HEALTHCHECK's CMD."""
        (arguments,) = self.all(keyword)[-1:]
        if keyword == "HEALTHCHECK":
            arguments = arguments[arguments.index("CMD ") + 4 :]
        value = json.loads(arguments)
        assert isinstance(value, list), f"{keyword} in exec form"
        return value

    def healthcheck_options(self) -> dict[str, str]:
        (arguments,) = self.all("HEALTHCHECK")
        options = arguments[: arguments.index("CMD ")].split()
        return dict(option.removeprefix("--").split("=", 1) for option in options)


@cache
def dockerfile(path: Path) -> Dockerfile:
    return Dockerfile(path)


def image_settings(path: Path) -> dict[str, str]:
    """{setting: value} the image's ENV sets (its defaults for `serve`)."""
    env = dockerfile(path).env()
    return {setting_of_variable(k) or k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}


def dockerignore_allows(relative: str, patterns: Iterable[str]) -> bool:
    """Whether .dockerignore lets `relative` (a path in the context) into the build.

    Docker's rules: the last pattern matching the path or one of its parent folders wins; `!`
    re-includes; `**` matches any number of folders.
    """
    parts = Path(relative).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.removeprefix("!").strip("/")
        regex = re.escape(glob).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            included = negate
    return included


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


# ---- YAML and the tools -----------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text())


def load_yaml_documents(text: str) -> list[dict[str, Any]]:
    import yaml

    return [document for document in yaml.safe_load_all(text) if document]


def tool(name: str) -> str:
    """A command-line tool of the dev extras: beside this Python first, then on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    assert found, f"{name} is missing: `make install` installs the dev extras"
    return found


@cache
def _unshare_works() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        return False
    done = subprocess.run([unshare, "-n", "true"], capture_output=True, timeout=30)
    return done.returncode == 0


def run_offline(argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a tool with no network: in a network namespace of its own when this user can make
    one (root: `unshare -n`), and in any case through a proxy that does not exist."""
    dead = "http://127.0.0.1:9"  # the discard port: nothing listens there
    env = {**os.environ, **{k: dead for k in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy")}}
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    prefix = ["unshare", "-n"] if _unshare_works() else []
    return subprocess.run(
        [*prefix, *argv], env=env, capture_output=True, text=True, timeout=300, **kwargs
    )


def substitute_kubernetes_variables(value: str, defined: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion in env values, commands and args."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in defined, f"$({name}) is not defined before it is used"
        return defined[name]

    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", replace, value)
