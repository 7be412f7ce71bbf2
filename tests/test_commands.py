"""Every command a user types: ``barkbench --help`` (the console script and ``python -m barkbench``), each
subcommand's ``--help``, ``barkbench`` alone, an unknown command or option, ``--version``, a subcommand given a
wrong argument. Help and version exit 0 on stdout; a usage mistake exits 2 with one line on stderr,
``barkbench: error: <problem>`` and, for argparse's own findings, ``(see `barkbench [COMMAND] --help`)``; none
shows a traceback.

Parametrized over ``cli.SUBCOMMANDS``, so a command added there is covered without touching this file. The
installed entry points run in subprocesses (what a user runs); the many per-command cases also run in-process
through ``cli.main``, which is cheaper."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import barkbench
from barkbench import cli

Capsys = pytest.CaptureFixture[str]
COMMANDS = list(cli.SUBCOMMANDS)


def console_script() -> str:
    """The ``barkbench`` script installed next to this interpreter (the venv's ``bin/``), not one on PATH."""
    found = shutil.which("barkbench", path=str(Path(sys.executable).parent))
    assert found, f"no barkbench console script next to {sys.executable}: install the package (pip install -e .)"
    return found


#: The two ways a user starts the command.
ENTRY_POINTS = {
    "console-script": lambda: [console_script()],
    "python-m": lambda: [sys.executable, "-m", "barkbench"],
}


def run_command(entry: str, *args: str) -> subprocess.CompletedProcess[str]:
    # Wide enough that argparse wraps no help line: a line broken at a hyphen would not read back as written.
    env = {**os.environ, "COLUMNS": "1000"}
    return subprocess.run([*ENTRY_POINTS[entry](), *args], capture_output=True, text=True, timeout=120, env=env)


def assert_one_line_usage_error(code: int, stdout: str, stderr: str, *needles: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert code == 2, (code, stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("barkbench: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert stdout == ""


def subparser(name: str) -> argparse.ArgumentParser:
    (action,) = [a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    parser = action.choices[name]
    assert isinstance(parser, argparse.ArgumentParser)
    return parser


def argument_names(parser: argparse.ArgumentParser) -> list[str]:
    """What a subcommand's help must show: every shown option's longest flag and every positional's name."""
    names = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            names.append(max(action.option_strings, key=len))
        else:
            names.append(str(action.metavar or action.dest))
    return names


def words(text: str) -> str:
    return " ".join(text.split())


# -- through the installed entry points ----------------------------------------------------------------------


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_top_level_help_lists_every_command(entry: str) -> None:
    done = run_command(entry, "--help")
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith("usage: barkbench ")
    listed = words(done.stdout)
    for name, module in cli.SUBCOMMANDS.items():
        assert f" {name} " in listed, name
        assert words(module.HELP) in listed, name  # each command's line, a literal % included


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_no_command_is_a_one_line_error_naming_the_commands(entry: str) -> None:
    done = run_command(entry)
    assert_one_line_usage_error(
        done.returncode, done.stdout, done.stderr, "choose a command: ", *COMMANDS, "(see `barkbench --help`)"
    )


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_an_unknown_command_is_a_one_line_error(entry: str) -> None:
    done = run_command(entry, "frobnicate")
    assert_one_line_usage_error(
        done.returncode, done.stdout, done.stderr, "invalid choice", "frobnicate", "(see `barkbench --help`)"
    )


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_version(entry: str) -> None:
    done = run_command(entry, "--version")
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.strip() == f"barkbench {barkbench.__version__}"


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_help_through_the_console_script(name: str) -> None:
    done = run_command("console-script", name, "--help")
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith(f"usage: barkbench {name} ")
    shown = words(done.stdout)
    assert words(cli.SUBCOMMANDS[name].HELP) in shown  # the description
    for argument in argument_names(subparser(name)):
        assert argument in shown, f"`barkbench {name} --help` does not name {argument}"


# -- in-process: the same rules on every command, cheaply --------------------------------------------------------


def test_top_level_help_in_process(capsys: Capsys) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: barkbench ") and all(name in out for name in COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_has_help_arguments_and_a_handler(name: str, capsys: Capsys) -> None:
    module = cli.SUBCOMMANDS[name]
    assert module.__name__.startswith("barkbench.commands."), "subcommands live in barkbench.commands"
    assert isinstance(module.HELP, str) and module.HELP.strip()
    assert callable(module.add_arguments) and callable(module.run)
    assert argument_names(subparser(name)), f"{name} shows no argument in its help"
    assert cli.main([name, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: barkbench {name} ")


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_refuses_an_unknown_option_in_one_line(name: str, capsys: Capsys) -> None:
    # A missing required argument or the unknown option itself, whichever argparse meets first: one line, exit 2.
    code = cli.main([name, "--no-such-option"])
    captured = capsys.readouterr()
    assert_one_line_usage_error(code, captured.out, captured.err, f"`barkbench {name} --help`)")


def test_an_unknown_top_level_option_is_a_one_line_error(capsys: Capsys) -> None:
    code = cli.main(["--no-such-option"])
    captured = capsys.readouterr()
    assert_one_line_usage_error(
        code, captured.out, captured.err, "unrecognized arguments: --no-such-option", "(see `barkbench --help`)"
    )


def test_a_command_line_mistake_found_by_a_command_is_a_one_line_error(capsys: Capsys) -> None:
    # Raised by the commands layer (UsageError), not by argparse.
    code = cli.main(["sweep", "--shards", "0", "bench/"])
    captured = capsys.readouterr()
    assert_one_line_usage_error(code, captured.out, captured.err, "--shards must be >= 1, got 0")


def test_importing_the_commands_loads_no_heavy_library() -> None:
    # `barkbench --help` imports cli and every command module: a domain that pulls in torch, matplotlib or scipy
    # must be imported inside the command's run, or every invocation waits for it.
    modules = ["barkbench.cli", *(m.__name__ for m in cli.SUBCOMMANDS.values())]
    code = (
        f"import importlib, sys\nfor name in {modules!r}:\n    importlib.import_module(name)\n"
        "print(sorted(m for m in ('torch', 'transformers', 'matplotlib', 'scipy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
