"""The `eager-llm` command line."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> None:
    from . import ops_demo

    ops_demo.run(seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eager-llm", description="EAGER-LLM generative recommendation.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser("demo", help="run the demonstration on built-in random data")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.handler(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
