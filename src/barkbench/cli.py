"""The ``barkbench`` console script: the dispatcher of the subcommands in ``barkbench.commands``.

Each subcommand is a module there exposing ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; adding
one is one entry in ``SUBCOMMANDS``. Every error the user can fix prints ``barkbench: error: <one line>`` on
stderr and exits with status 2 (1 is reserved for a failed gate: ``compare``'s regression, ``budgets``' excess).
Importing it imports neither torch, transformers, matplotlib nor scipy, so ``barkbench --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import NoReturn

from barkbench import __version__
from barkbench.commands import (
    UsageError,
    acceptance,
    budgets,
    compare,
    doctor,
    export_github,
    merge,
    overhead,
    report,
    sweep,
)
from barkbench.results.budgets import BudgetError
from barkbench.results.load import ResultsError

#: name -> module implementing the subcommand protocol.
SUBCOMMANDS: dict[str, ModuleType] = {
    "report": report,
    "compare": compare,
    "export-github": export_github,
    "budgets": budgets,
    "doctor": doctor,
    "acceptance": acceptance,
    "merge": merge,
    "sweep": sweep,
    "overhead": overhead,
}

#: Subcommands whose unknown arguments are passed on (``sweep``: the pytest arguments, in their order).
PASS_THROUGH = ("sweep",)

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse would print the whole usage block and exit; one actionable line reads better in CI logs.
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="barkbench",
        description="Reports and regression gates for barkbench results (pytest-benchmark JSON files).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module in SUBCOMMANDS.items():
        # No abbreviations: a pass-through pytest option must never be read as a prefix of one of ours.
        sub = subparsers.add_parser(
            name, help=_literal(module.HELP), description=module.HELP, allow_abbrev=name not in PASS_THROUGH
        )
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


def _literal(text: str) -> str:
    """``text`` as a help string argparse prints as written: it %-formats every help (``%(default)s``), so a plain
    ``%`` ("95 % interval") made ``barkbench --help`` die with a TypeError. A description is formatted only when
    it holds ``%(prog)``, so it takes the text as is."""
    return text.replace("%", "%%")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        command = getattr(args, "command", None)
        if extra and command not in PASS_THROUGH:
            # Point at the help that lists the options the user could have meant: the command's own.
            where = f"barkbench {command}" if command else "barkbench"
            raise UsageError(f"unrecognized arguments: {' '.join(extra)} (see `{where} --help`)")
        if extra:
            args.pytest_args = extra
        handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
        if handler is None:
            raise UsageError(f"choose a command: {', '.join(SUBCOMMANDS)} (see `barkbench --help`)")
        return handler(args)
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else 0
    except (UsageError, ResultsError, BudgetError) as exc:
        return _error(str(exc))
    except OSError as exc:  # e.g. an output directory that cannot be written
        return _error(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))


def _error(message: str) -> int:
    print(f"barkbench: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
