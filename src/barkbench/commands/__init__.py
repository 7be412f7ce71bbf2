"""The ``barkbench`` subcommands, one module each: its ``HELP`` line, ``add_arguments(parser)`` and
``run(args) -> int``. They read the command line and print; the work is done by the domain modules they call
(``results``, ``measure``, ``sweep``, ``doctor``), which hold no argparse.

A module whose domain imports a heavy library (matplotlib, scipy, torch) imports it inside ``run``, so
``barkbench --help`` and the light commands never pay for it.
"""

from __future__ import annotations


class UsageError(Exception):
    """A command-line mistake the user can fix; ``barkbench`` prints it on one line and exits with status 2.
    Domain modules raise their own errors; a command turns the ones that are about its arguments into this."""
