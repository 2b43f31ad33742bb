"""Server settings, declared once: each field gives its default, range and description.

From the declaration come the `advantage-service serve` flags (`--max-message-mb`), the
environment variables (`ADVANTAGE_MAX_MESSAGE_MB`) and the README's configuration table
(`settings_table()`, checked by a test). Precedence: flag, then environment, then default.
pydantic-settings does the parsing and validation, so a bad value is refused with the setting's
name, what it expects and what it got.
"""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "ADVANTAGE_"


class Settings(BaseSettings):
    """Everything `advantage-service serve` can be told."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    host: str = Field("[::]", description="address the gRPC server binds")
    port: int = Field(50051, ge=0, le=65535, description="gRPC port (0 = a free port)")
    model_repository: Path | None = Field(
        None,
        description="folder of model folders (each with a model.json); unset = the built-in "
        "demo model",
    )
    dreamer_demo: bool = Field(
        False,
        description="without --model-repository, also serve the built-in DreamerV3 model "
        "`dreamer-demo` (a seeded world model, actor and critic; `make serve` sets it)",
    )
    offpolicy_demos: bool = Field(
        False,
        description="without a model repository, also serve the seeded off-policy demo models "
        "demo_sac, demo_ddpg, demo_discrete_sac and demo_dqn (`make serve` turns this on)",
    )
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda or cuda:N")
    max_message_mb: float = Field(
        64.0, gt=0, description="largest request or response accepted, in MiB"
    )
    workers: int = Field(
        2,
        ge=1,
        description="compute threads (with batching, the pool also gets one thread per queue slot)",
    )
    grace_seconds: float = Field(
        10.0, ge=0, description="how long SIGTERM/SIGINT lets in-flight calls finish"
    )
    rest_host: str = Field(
        "127.0.0.1", description="address of the REST debug surface (/v1, /docs, /debug, /metrics)"
    )
    rest_port: int = Field(
        8080, ge=0, le=65535, description="port of the REST debug surface; 0 disables it"
    )
    batching: bool = Field(
        False,
        description="merge concurrent requests' value-network passes into one (per model; a "
        "model's manifest `batching` section wins)",
    )
    max_batch_rows: int = Field(32768, ge=1, description="batching: most network rows in one pass")
    max_queue_delay_us: int = Field(
        0, ge=0, description="batching: longest wait for more requests after the first (µs)"
    )
    max_queue_size: int = Field(
        128, ge=1, description="batching: queued requests before RESOURCE_EXHAUSTED"
    )
    max_imagination_steps: int = Field(
        256,
        ge=1,
        description="DreamerV3: the longest imagination horizon a ComputeLoss may ask for "
        "(longer: RESOURCE_EXHAUSTED)",
    )
    auth_token_file: Path | None = Field(
        None,
        description="file holding the bearer token every AdvantageService call and REST /v1/ "
        "route must carry ('authorization: Bearer <token>')",
    )
    auth_token: str | None = Field(
        None,
        description="the bearer token itself (environment only, never a flag: the process list "
        "is public); --auth-token-file wins",
        json_schema_extra={"flag": False},
    )
    admin_token_file: Path | None = Field(
        None,
        description="file holding the admin (write) token: with one set, writes (ComputeLoss "
        "with apply_update, SetParameters) need it and the read token only reads; it also reads",
    )
    admin_token: str | None = Field(
        None,
        description="the admin token itself (environment only, never a flag); "
        "--admin-token-file wins",
        json_schema_extra={"flag": False},
    )
    tls_cert: Path | None = Field(
        None,
        description="PEM certificate (chain) of the server: gRPC and REST serve TLS only "
        "(needs --tls-key)",
    )
    tls_key: Path | None = Field(None, description="PEM private key of --tls-cert")
    tls_client_ca: Path | None = Field(
        None,
        description="PEM CA bundle: clients must present a certificate it signed (mutual TLS, "
        "gRPC and REST; needs --tls-cert)",
    )

    max_concurrent_rpcs: int = Field(
        1024,
        ge=1,
        description="RPCs the gRPC server handles at once; more get RESOURCE_EXHAUSTED (grpc's "
        "maximum_concurrent_rpcs)",
    )
    max_inflight_mb: float = Field(
        256.0,
        gt=0,
        description="request bytes being worked on at once (gRPC and REST); a request that "
        "would pass it gets RESOURCE_EXHAUSTED before any work",
    )
    inline_max_kb: float = Field(
        64.0,
        ge=0,
        description="ComputeAdvantage requests up to this size (KiB) run on the event loop, "
        "without a hop to the compute pool, when nobody holds their model's lock, its batcher (if "
        "any) is idle and its recent such requests held their thread at most 5 ms, time spent "
        "preempted not counted (the first: the largest such request, measured at start); 0 = "
        "every request on the pool",
    )
    reuse_port: bool = Field(
        False,
        description="let several servers bind the same gRPC port (SO_REUSEPORT); off, a taken "
        "port is an error at start",
    )
    # NoDecode: the flag and the variable are a comma-separated list (a JSON list works too).
    rest_allowed_hosts: Annotated[list[str] | None, NoDecode] = Field(
        None,
        description="host names the REST surface answers to, comma-separated: the Host header "
        "must name one, and an Origin must be one of them at the REST port; '*' = any host; "
        "unset = --rest-host, localhost, 127.0.0.1 and ::1 (/healthz, /readyz and /metrics "
        "answer any Host)",
    )
    rest_json_workers: int = Field(
        1,
        ge=1,
        description="threads that parse REST request JSON and write response JSON, apart from "
        "the compute pool (big bodies never hold up gRPC)",
    )
    follow: str | None = Field(
        None,
        description="serve as a replica of the learner at this gRPC address (host:port, or "
        "dns:///name:port): answer reads from a copy of its parameters, kept current through "
        "WatchModels; refuse writes. Start it with the learner's --model-repository",
    )
    follow_tls_ca: Path | None = Field(
        None,
        description="PEM CA bundle that signed the learner's certificate: --follow over TLS "
        "(unset = plaintext; a learner that wants client certificates is not supported)",
    )

    @field_validator("rest_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, hosts: Any) -> Any:
        if isinstance(hosts, str):
            text = hosts.strip()
            if not text:
                return None  # ADVANTAGE_REST_ALLOWED_HOSTS= (empty) is unset
            if text.startswith("["):
                try:
                    return json.loads(text)
                except json.JSONDecodeError:
                    pass  # "[::1]": an IPv6 address, not a JSON list
            return [host.strip() for host in text.split(",") if host.strip()]
        return hosts

    @field_validator("rest_allowed_hosts")
    @classmethod
    def _plain_hosts(cls, hosts: list[str] | None) -> list[str] | None:
        if hosts is None:
            return None
        names = []
        for host in hosts:
            name = host.strip().lower().removesuffix(".")
            if name.startswith("[") and name.endswith("]"):
                name = name[1:-1]
            if not name or "/" in name or name.count(":") == 1 or "[" in name or "]" in name:
                raise ValueError(
                    f"expected host names or addresses without scheme or port "
                    f"(example.com, 10.0.0.7, ::1) or '*', got {host!r}"
                )
            names.append(name)
        if not names:
            raise ValueError("expected at least one host name (or '*' for any)")
        return names

    @field_validator("follow")
    @classmethod
    def _learner_address(cls, address: str | None) -> str | None:
        if address is None or not address.strip():
            return None  # ADVANTAGE_FOLLOW= (empty) is unset
        address = address.strip()
        if any(c.isspace() for c in address) or "," in address:
            raise ValueError(
                f"expected one gRPC address of the learner (host:port), got {address!r}"
            )
        return address

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        if device == "auto":
            return device
        try:
            torch.device(device)
        except RuntimeError:
            raise ValueError(f"expected auto, cpu, cuda or cuda:N, got {device!r}") from None
        return device

    @model_validator(mode="after")
    def _token_from_file(self) -> Settings:
        if self.auth_token_file is not None:
            token = Path(self.auth_token_file).read_text().strip()
            if not token:
                raise ValueError(f"auth_token_file: {self.auth_token_file} is empty")
            object.__setattr__(self, "auth_token", token)
        if self.auth_token == "":
            object.__setattr__(self, "auth_token", None)
        return self

    @model_validator(mode="after")
    def _admin_token_and_tls(self) -> Settings:
        if self.admin_token_file is not None:
            token = _read_file("admin_token_file", self.admin_token_file).strip()
            if not token:
                raise ValueError(f"admin_token_file: {self.admin_token_file} is empty")
            object.__setattr__(self, "admin_token", token)
        if self.admin_token == "":
            object.__setattr__(self, "admin_token", None)
        if self.admin_token is not None and self.admin_token == self.auth_token:
            raise ValueError("admin_token: must differ from the read token (auth_token)")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert, tls_key: give both or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca: mutual TLS needs tls_cert and tls_key too")
        if self.tls_cert is not None and self.tls_key is not None:
            _check_tls_files(self.tls_cert, self.tls_key, self.tls_client_ca)
        if self.follow_tls_ca is not None:
            if self.follow is None:
                raise ValueError("follow_tls_ca: only for a replica (set --follow too)")
            if "-----BEGIN " not in _read_file("follow_tls_ca", self.follow_tls_ca):
                raise ValueError(f"follow_tls_ca: {self.follow_tls_ca} holds no PEM block")
        return self

    @property
    def max_inflight_bytes(self) -> int:
        """The admission budget in bytes."""
        return int(self.max_inflight_mb * 1024 * 1024)

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


def _read_file(name: str, path: Path) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{name}: cannot read {path} ({error})") from None


def _check_tls_files(cert: Path, key: Path, client_ca: Path | None) -> None:
    """Refuse, in one line, a certificate, key or CA that TLS would fail on at start-up."""
    for name, path in (("tls_cert", cert), ("tls_key", key), ("tls_client_ca", client_ca)):
        if path is not None and "-----BEGIN " not in _read_file(name, path):
            raise ValueError(f"{name}: {path} holds no PEM block")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as error:
        raise ValueError(f"tls_cert, tls_key: {cert} and {key} do not load ({error})") from None
    if client_ca is not None:
        try:
            context.load_verify_locations(client_ca)
        except ssl.SSLError as error:
            raise ValueError(f"tls_client_ca: {client_ca} does not load ({error})") from None


def flag_fields() -> dict[str, Any]:
    """The settings that are also command-line flags, by field name."""
    return {
        name: info
        for name, info in Settings.model_fields.items()
        if (info.json_schema_extra or {}).get("flag", True)  # type: ignore[union-attr]
    }


def flag(name: str) -> str:
    """The command-line flag of setting `name` ("--max-message-mb")."""
    return "--" + name.replace("_", "-")


def settings_table() -> str:
    """The README's configuration table (Markdown), generated from the declaration."""
    rows = [
        "| flag | environment variable | default | description |",
        "|---|---|---|---|",
    ]
    for name, info in Settings.model_fields.items():
        shown = f"`{flag(name)}`" if name in flag_fields() else "—"
        default = "unset" if info.default is None else f"`{info.default}`"
        rows.append(f"| {shown} | `{ENV_PREFIX}{name.upper()}` | {default} | {info.description} |")
    return "\n".join(rows)


if __name__ == "__main__":  # `python -m service.settings` prints the README's table
    print(settings_table())
