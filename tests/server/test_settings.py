"""Settings are declared once: flags, environment variables and the README table follow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import build_settings
from service.settings import Settings, flag, flag_fields, settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_configuration_table_is_generated_from_the_settings() -> None:
    text = README.read_text()
    table = text.split("<!-- settings:begin -->\n", 1)[1].split("<!-- settings:end -->", 1)[0]
    assert table.strip() == settings_table().strip(), (
        "README's configuration table is stale: paste `python -m service.settings`"
    )
    for name in Settings.model_fields:
        assert f"`ADVANTAGE_{name.upper()}`" in table


def test_every_setting_is_described_and_every_flag_parses() -> None:
    for name, info in Settings.model_fields.items():
        assert info.description, name
    assert "auth_token" not in flag_fields()  # a secret never goes on the command line
    settings = build_settings(["serve", "--port", "50099", "--workers", "3", "--batching"])
    assert (settings.port, settings.workers, settings.batching) == (50099, 3, True)
    assert flag("max_message_mb") == "--max-message-mb"


def test_flag_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADVANTAGE_WORKERS", "5")
    assert build_settings(["serve"]).workers == 5
    assert build_settings(["serve", "--workers", "7"]).workers == 7


@pytest.mark.parametrize(
    ("arguments", "environment", "named"),
    [
        (["--port", "eighty"], {}, "--port / ADVANTAGE_PORT"),
        (["--workers", "0"], {}, "--workers / ADVANTAGE_WORKERS"),
        ([], {"ADVANTAGE_MAX_MESSAGE_MB": "-1"}, "--max-message-mb / ADVANTAGE_MAX_MESSAGE_MB"),
        (["--device", "banana"], {}, "--device / ADVANTAGE_DEVICE"),
    ],
)
def test_a_bad_setting_stops_the_server_with_one_line(
    arguments: list[str], environment: dict[str, str], named: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADVANTAGE_")}
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--rest-port", "0", *arguments],
        env={**env, **environment},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0] and "Traceback" not in result.stderr
