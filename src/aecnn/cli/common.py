"""What every ``aecnn`` subcommand shares: the parser class (help with defaults shown) and
the common ``--config``/``--set`` arguments."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default after its help (unless it has none: None, False or an
    empty list), and descriptions as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        positional_optional = not action.option_strings and action.nargs in ("?", "*")
        if ("%(default)" in text or default is None or default is False or default == []
                or default == argparse.SUPPRESS or positional_optional):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose help shows defaults; subcommand parsers are of this class
    too (``add_subparsers`` makes its children with the parent's class)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        """A usage error as every other user error: one line, exit status 2."""
        where = self.prog.removeprefix("aecnn").strip()
        self.exit(2, f"aecnn: error: {where + ': ' if where else ''}{message} "
                     f"(see {self.prog} --help)\n")


def add_config_args(p: argparse.ArgumentParser, what: str, example: str) -> None:
    """``--config FILE`` (``what``: where such files are), repeatable ``--set KEY=VALUE``
    (``example``: one such override) and ``--no-progress``."""
    p.add_argument("--config", help=f"YAML config file ({what})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override one config value, e.g. --set {example} (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
