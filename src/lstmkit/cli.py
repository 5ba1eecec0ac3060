"""The ``lstmkit`` command: subcommands (one module each in ``lstmkit.commands``) that call the library."""
from __future__ import annotations

import argparse
import importlib
import sys

# each name is a module in lstmkit/commands with register(subparsers)
COMMANDS = ("summary", "demo", "classify", "forecast", "generate", "predict", "convert", "report", "explain")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="lstmkit", description="LSTM and GRU networks: reference, engine, tools.")
    parser.add_argument("--version", action="version", version=f"lstmkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"lstmkit.commands.{name}").register(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as e:
        print(f"lstmkit {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
