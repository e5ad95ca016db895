"""The ``aecnn`` command line. Every entry point is ``main(argv=None)``.

Errors a user can cause (wrong path, unknown model, corrupt checkpoint, ...) are printed as
one line, ``aecnn: error: ...``, with exit status 2; never as a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from aecnn.cli import bench, bottlenet, demo, entropic, inspect, link, runtime, train
from aecnn.cli.common import Parser
from aecnn.errors import AecnnError
from aecnn.version import __version__

DESCRIPTION = """\
Split a CNN between a device and an edge server, compress what crosses the link with
channel attention (AECNN), and run it: train, export, serve, infer, plan, measure.

Start with `aecnn demo` (a small end-to-end run), then `aecnn <command> --help`."""


def build_parser() -> argparse.ArgumentParser:
    """The ``aecnn`` parser with every subcommand."""
    parser = Parser(prog="aecnn", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"aecnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo.add_parsers(sub)
    train.add_parsers(sub)
    bottlenet.add_parser(sub)
    entropic.add_parser(sub)
    inspect.add_parsers(sub)
    runtime.add_parsers(sub)
    bench.add_parsers(sub)
    link.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one ``aecnn`` command; returns its exit status (2 for a user error)."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("aecnn").setLevel(logging.INFO)  # ours at INFO, libraries' quieter
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (argparse printed it)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return args.func(args)
    except AecnnError as exc:
        print(f"aecnn: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aecnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
