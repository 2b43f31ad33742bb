"""Command line: `advantage-service serve` and `advantage-service export-model`."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from service.config import Settings, env_default, parse_flag, read_auth_token


def _serve_parser(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="run the gRPC server (env: ADVANTAGE_<OPTION>)")
    defaults = Settings()
    serve.add_argument("--host", default=env_default("host", defaults.host))
    serve.add_argument("--port", type=int, default=env_default("port", defaults.port))
    serve.add_argument(
        "--model-repository",
        type=Path,
        default=env_default("model_repository", None),
        help="folder of model folders (each with a model.json); default: the built-in demo model",
    )
    serve.add_argument(
        "--device",
        default=env_default("device", defaults.device),
        help="auto (CUDA when present), cpu, cuda or cuda:N",
    )
    serve.add_argument(
        "--max-message-mb",
        type=float,
        default=env_default("max_message_mb", defaults.max_message_mb),
        help="largest request or response accepted, in MiB",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=env_default("workers", defaults.workers),
        help="compute threads (with batching, the pool also gets one thread per queue slot)",
    )
    serve.add_argument(
        "--grace-seconds",
        type=float,
        default=env_default("grace_seconds", defaults.grace_seconds),
        help="how long SIGTERM/SIGINT lets in-flight calls finish",
    )
    serve.add_argument(
        "--rest-host",
        default=env_default("rest_host", defaults.rest_host),
        help="address of the REST debug surface (/v1, /docs, /debug, /metrics)",
    )
    serve.add_argument(
        "--rest-port",
        type=int,
        default=env_default("rest_port", defaults.rest_port),
        help="port of the REST debug surface; 0 disables it",
    )
    serve.add_argument(
        "--auth-token-file",
        type=Path,
        default=env_default("auth_token_file", None),
        help="require 'authorization: Bearer <token>' on every AdvantageService call and REST "
        "/v1/ route (the token can also come from ADVANTAGE_AUTH_TOKEN)",
    )
    _batching_arguments(serve, defaults)


def _batching_arguments(serve: argparse.ArgumentParser, defaults: Settings) -> None:
    """Dynamic batching (service.batching); a model's manifest `batching` section wins."""
    serve.add_argument(
        "--batching",
        action=argparse.BooleanOptionalAction,
        default=parse_flag(env_default("batching", defaults.batching)),
        help="merge concurrent requests' value-network passes into one (per model)",
    )
    for flag, kind, text in (
        ("max_batch_rows", "rows", "most network rows in one merged pass"),
        ("max_queue_delay_us", "µs", "longest wait for more requests after the first arrived"),
        ("max_queue_size", "requests", "queued requests before RESOURCE_EXHAUSTED"),
    ):
        serve.add_argument(
            "--" + flag.replace("_", "-"),
            type=int,
            default=env_default(flag, getattr(defaults, flag)),
            help=f"batching: {text} ({kind})",
        )


def _export_parser(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export-model", help="write the built-in demo model as a model-repository folder"
    )
    export.add_argument("folder", type=Path, help="destination folder (created)")
    export.add_argument("--name", default="demo")
    export.add_argument("--format", choices=("torch.export", "torchscript"), default="torch.export")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="advantage-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _serve_parser(commands)
    _export_parser(commands)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(
        host=args.host,
        port=int(args.port),
        model_repository=Path(args.model_repository) if args.model_repository else None,
        device=args.device,
        max_message_mb=float(args.max_message_mb),
        workers=int(args.workers),
        grace_seconds=float(args.grace_seconds),
        rest_host=args.rest_host,
        rest_port=int(args.rest_port),
        batching=parse_flag(args.batching),
        max_batch_rows=int(args.max_batch_rows),
        max_queue_delay_us=int(args.max_queue_delay_us),
        max_queue_size=int(args.max_queue_size),
        auth_token=read_auth_token(args.auth_token_file),
    )


def build_settings(argv: list[str]) -> Settings:
    """Settings for `serve` from arguments and ADVANTAGE_* variables (arguments win)."""
    return _settings(_parser().parse_args(argv))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `advantage-service` console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "serve":
        from service.server import serve

        asyncio.run(serve(_settings(args)))
    else:
        from service.models.demo import demo_manifest, demo_networks
        from service.models.export import export_model

        value, actor = demo_networks()
        manifest = demo_manifest()
        export_model(
            args.folder,
            args.name,
            manifest.inputs,
            value_network=value,
            actor_network=actor,
            action=manifest.action,
            file_format=args.format,
        )
        print(f"wrote model {args.name!r} to {args.folder}")


if __name__ == "__main__":
    main()
