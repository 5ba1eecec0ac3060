"""The ``lstmkit`` command: subcommands that call the library, nothing more."""
from __future__ import annotations

import argparse
import sys


def _summary(args) -> int:
    from .params import RNNConfig
    from .summary import summary

    config = RNNConfig(args.mode.upper(), args.input_size, args.hidden_size, args.num_layers, not args.no_bias,
                       bidirectional=args.bidirectional, proj_size=args.proj_size)
    print(summary(config))
    return 0


def _demo(args) -> int:
    from .demo import run

    run(epochs=args.epochs, hidden=args.hidden_size, seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="lstmkit", description="LSTM and GRU networks: reference, engine, tools.")
    parser.add_argument("--version", action="version", version=f"lstmkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("summary", help="weight shapes and parameter counts (torch and Keras) of an architecture")
    s.add_argument("--mode", choices=["lstm", "gru", "LSTM", "GRU"], default="lstm")
    s.add_argument("--input-size", type=int, required=True)
    s.add_argument("--hidden-size", type=int, required=True)
    s.add_argument("--num-layers", type=int, default=1)
    s.add_argument("--bidirectional", action="store_true")
    s.add_argument("--proj-size", type=int, default=0)
    s.add_argument("--no-bias", action="store_true")
    s.set_defaults(func=_summary)

    d = sub.add_parser("demo", help="train a small LSTM in NumPy on a periodic series; print summary and loss")
    d.add_argument("--epochs", type=int, default=15)
    d.add_argument("--hidden-size", type=int, default=32)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError) as e:
        print(f"lstmkit {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
