"""Server settings, from the command line or ADVANTAGE_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

ENV_PREFIX = "ADVANTAGE_"


@dataclass(frozen=True)
class Settings:
    """Everything `advantage-service serve` can be told."""

    host: str = "[::]"
    port: int = 50051
    model_repository: Path | None = None
    device: str = "auto"
    max_message_mb: float = 64.0
    workers: int = 2
    grace_seconds: float = 10.0
    rest_host: str = "127.0.0.1"
    rest_port: int = 8080  # 0 disables the REST debug surface
    # Dynamic batching of value-network passes across requests (service.batching); a model's
    # manifest `batching` section overrides each field it sets.
    batching: bool = False
    max_batch_rows: int = 32768
    max_queue_delay_us: int = 0
    max_queue_size: int = 128
    # Bearer token every AdvantageService call and REST /v1/ route must carry (None = open).
    auth_token: str | None = None

    @property
    def max_message_bytes(self) -> int:
        """Receive and send limit for one gRPC message."""
        return int(self.max_message_mb * 1024 * 1024)

    def torch_device(self) -> torch.device:
        """The device networks and estimators run on ("auto" = CUDA when present)."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {self.device}: CUDA is not available on this machine")
        return device


def read_auth_token(token_file: Path | str | None) -> str | None:
    """The token from --auth-token-file, else ADVANTAGE_AUTH_TOKEN, else None (no auth).

    Never from the command line itself, where other users could read it in the process list.
    """
    if token_file:
        token = Path(token_file).read_text().strip()
        if not token:
            raise ValueError(f"--auth-token-file {token_file}: the file is empty")
        return token
    return os.environ.get(ENV_PREFIX + "AUTH_TOKEN") or None


def env_default(name: str, default: object) -> object:
    """The value of ADVANTAGE_<NAME> if set, else `default` (for argparse defaults)."""
    return os.environ.get(ENV_PREFIX + name.upper(), default)


def parse_flag(value: object) -> bool:
    """A boolean setting from argparse or the environment ("1", "true", "yes", "on" = True)."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")
