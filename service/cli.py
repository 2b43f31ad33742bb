"""Command line: `advantage-service serve` and `advantage-service export-model`.

`serve`'s flags are generated from `service.settings.Settings`; a bad setting ends the program
with one line naming it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from service.settings import ENV_PREFIX, Settings, flag, flag_fields


def _serve_parser(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve", help=f"run the gRPC server (every flag also reads {ENV_PREFIX}<FLAG>)"
    )
    for name, info in flag_fields().items():
        help_text = f"{info.description} (env {ENV_PREFIX}{name.upper()}; default {info.default})"
        if info.annotation is bool:
            serve.add_argument(
                flag(name), dest=name, action=argparse.BooleanOptionalAction, help=help_text
            )
        else:  # values go to pydantic as given: one validation, one kind of message
            serve.add_argument(flag(name), dest=name, metavar=name.upper(), help=help_text)
    serve.set_defaults(_settings=True)


def _export_parser(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export-model", help="write the built-in demo model as a model-repository folder"
    )
    export.add_argument("folder", type=Path, help="destination folder (created)")
    export.add_argument("--name", default=None, help="model name (demo, or demo_heads)")
    export.add_argument(
        "--two-heads",
        action="store_true",
        help="the two-head demo (a categorical 'move' and a tanh-normal 'aim' head)",
    )
    export.add_argument("--format", choices=("torch.export", "torchscript"), default="torch.export")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="advantage-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _serve_parser(commands)
    _export_parser(commands)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    given = {name: getattr(args, name) for name in flag_fields() if getattr(args, name) is not None}
    return Settings(**given)


def build_settings(argv: list[str]) -> Settings:
    """Settings for `serve` from arguments and ADVANTAGE_* variables (arguments win)."""
    return _settings(_parser().parse_args(argv))


def describe_invalid(error: ValidationError) -> str:
    """One line per invalid setting: its flag and variable, what it expects, what it got."""
    lines = []
    for problem in error.errors():
        name = str(problem["loc"][0]) if problem["loc"] else ""
        where = f"{flag(name)} / {ENV_PREFIX}{name.upper()}" if name else "settings"
        message = problem["msg"].removeprefix("Value error, ")
        got = f" (got {problem['input']!r})" if name and "got" not in message else ""
        lines.append(f"advantage-service: invalid setting {where}: {message}{got}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `advantage-service` console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "serve":
        from service.server import serve

        try:
            settings = _settings(args)
            settings.torch_device()
        except ValidationError as error:
            sys.exit(describe_invalid(error))
        except ValueError as error:  # a device this machine does not have
            sys.exit(f"advantage-service: invalid setting {error}")
        asyncio.run(serve(settings))
    else:
        from service.models.demo import demo_manifest, demo_networks
        from service.models.demo_heads import two_head_manifest, two_head_networks
        from service.models.export import export_model

        if args.two_heads:
            (value, actor), manifest = two_head_networks(), two_head_manifest()
        else:
            (value, actor), manifest = demo_networks(), demo_manifest()
        args.name = args.name or manifest.name
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
