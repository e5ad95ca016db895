"""The ``aecnn`` command line: one subcommand per job, each ``main(argv=None)``-callable."""

from aecnn.cli.main import main

__all__ = ["main"]
