"""The reference pages, built from barkbench's own code at every ``mkdocs build`` (a hook: ``hooks:`` in mkdocs.yml).

Nothing here is a copy of what the code says, so the pages cannot drift from it:

- ``reference/options.md``: every ``--bark-*`` option, from the plugin's own ``pytest_addoption``
  (``barkbench.pytest_plugin.options.add_options``, called on a stand-in for pytest's parser that keeps what it is
  given: names, type, default, choices, metavar, help);
- ``reference/commands.md``: every ``barkbench`` subcommand and its arguments, from ``barkbench.cli.build_parser()``;
- ``reference/record.md``: every ``extra_info`` key, from ``barkbench.record.FIELDS`` (kind, unit, meaning, better
  direction, group).

The pages exist only in the built site (``mkdocs build``/``serve``); ``python docs/gen_reference.py PAGE`` prints one
(``options``, ``commands`` or ``record``) to read or diff. tests/test_docs.py checks that every option
``pytest --help`` and ``barkbench COMMAND --help`` list is on them. Importing this module imports neither mkdocs nor
torch; building the pages imports barkbench's options, CLI and record, which load no torch either.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# -- Markdown helpers ----------------------------------------------------------------------------------------------

#: A code span, kept as written (help texts quote commands and keys with backticks).
_CODE_SPAN = re.compile(r"(`[^`]*`)")
#: Characters Markdown would read as emphasis, links or table cells outside a code span.
_SPECIAL = re.compile(r"([\\*_\[\]|])")


def cell(text: str) -> str:
    """``text`` as one Markdown table cell: read as plain text (code spans kept), on one line."""
    parts = _CODE_SPAN.split(" ".join(str(text).split()))
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(part.replace("|", "\\|"))
        else:
            out.append(_SPECIAL.sub(r"\\\1", part).replace("<", "&lt;").replace(">", "&gt;"))
    return "".join(out)


def code(text: object) -> str:
    """``text`` as a code span (a table cell's too)."""
    return f"`{text}`".replace("|", "\\|")


def default_cell(default: object) -> str:
    """A default as a cell: none, False or an empty list as "—", a list as its items joined by commas."""
    if default is None or default is False or default is argparse.SUPPRESS:
        return "—"
    if isinstance(default, (list, tuple)):
        return code(",".join(map(str, default))) if default else "—"
    return code(default)


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def expand_help(help_text: str | None, params: dict[str, Any]) -> str:
    """A help string as argparse prints it: ``%(default)s`` and the like filled in, ``%%`` as ``%``."""
    if not help_text:
        return ""
    values = {k: (", ".join(map(str, v)) if k == "choices" and v is not None else v) for k, v in params.items()}
    try:
        return help_text % values
    except (KeyError, TypeError, ValueError):
        return help_text


# -- the --bark-* options: pytest_addoption on a stand-in parser ----------------------------------------------------


@dataclass
class Option:
    names: tuple[str, ...]
    attrs: dict[str, Any]

    def value(self) -> str:
        """What follows the option on the command line, as pytest's help shows it."""
        action = self.attrs.get("action")
        if action in ("store_true", "store_false", "count", "help", "version"):
            return "—"
        if self.attrs.get("choices"):
            return " \\| ".join(code(choice) for choice in self.attrs["choices"])
        metavar = self.attrs.get("metavar") or self.attrs.get("dest", self.names[-1].lstrip("-")).upper()
        return code(str(metavar).replace("-", "_"))

    def default(self) -> str:
        if self.attrs.get("action") in ("store_true", "append"):
            return "—"
        return default_cell(self.attrs.get("default"))

    def help(self) -> str:
        return expand_help(self.attrs.get("help"), {"default": self.attrs.get("default"), **self.attrs})


@dataclass
class OptionGroup:
    name: str
    description: str
    options: list[Option] = field(default_factory=list)

    def addoption(self, *names: str, **attrs: Any) -> None:
        self.options.append(Option(names, attrs))

    # pytest's OptionGroup also has _addoption (for pytest's own "-" options); barkbench's use addoption.
    _addoption = addoption


class Parser:
    """Stands in for ``pytest.Parser`` in a plugin's ``pytest_addoption``: keeps every option and ini value given."""

    def __init__(self) -> None:
        self.groups: dict[str, OptionGroup] = {}
        self.ini: list[tuple[str, str]] = []

    def getgroup(self, name: str, description: str = "", after: str | None = None) -> OptionGroup:
        group = self.groups.get(name)
        if group is None:
            group = self.groups[name] = OptionGroup(name, description)
        elif description:
            group.description = description
        return group

    def addoption(self, *names: str, **attrs: Any) -> None:
        self.getgroup("general").addoption(*names, **attrs)

    def addini(self, name: str, help: str, type: str | None = None, default: Any = None, **kwargs: Any) -> None:
        self.ini.append((name, help))


def plugin_options() -> Parser:
    """The options barkbench's pytest plugin adds, through its own ``pytest_addoption``."""
    from barkbench.pytest_plugin import plugin

    parser = Parser()
    plugin.pytest_addoption(parser)  # type: ignore[arg-type]  # the stand-in has the methods the hook calls
    return parser


def options_page() -> str:
    parser = plugin_options()
    out = [
        "# The `--bark-*` options\n",
        "The options barkbench's pytest plugin adds to every pytest run where barkbench is installed (the `pytest11` "
        "entry point; no conftest needed), with pytest-benchmark's own `--benchmark-*` options beside them. This page "
        "is generated from the plugin's `pytest_addoption` when the site is built, so it lists exactly what "
        "`pytest --help` shows under its barkbench group.\n",
    ]
    for group in parser.groups.values():
        out.append(f"## {group.description or group.name}\n")
        rows = [(" ".join(code(n) for n in o.names), o.value(), o.default(), cell(o.help())) for o in group.options]
        out.append(table(("option", "value", "default", "what it does"), rows))
    if parser.ini:
        out.append("## ini values\n")
        out.append(table(("name", "what it does"), [(code(n), cell(h)) for n, h in parser.ini]))
    return "\n".join(out)


# -- the barkbench subcommands: build_parser() -------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _argument_row(action: argparse.Action, prog: str) -> tuple[str, str, str, str]:
    params = {**vars(action), "prog": prog}
    helptext = expand_help(action.help, params)
    if action.option_strings:
        name = " ".join(code(s) for s in action.option_strings)
    else:
        name = code(action.metavar or action.dest)
    if action.nargs == 0:
        value = "—"
    elif action.choices:
        value = " \\| ".join(code(c) for c in action.choices)
    elif action.option_strings:
        value = code(action.metavar or action.dest.upper())
    else:
        value = "one or more" if action.nargs in ("+", "*") else "—"
    shown = "—" if action.nargs == 0 else default_cell(action.default)
    return name, value, shown, cell(helptext)


def commands_page() -> str:
    from barkbench import cli

    parser = cli.build_parser()
    subcommands = _subcommands(parser)
    out = [
        "# The `barkbench` command\n",
        f"{cell(parser.description or '')} `barkbench --version` prints the version; `python -m barkbench` is the "
        "same command. Errors you can fix print one line, `barkbench: error: ...`, and exit with status 2; "
        "status 1 is a failed gate. This page is generated from `barkbench.cli.build_parser()` when the site is "
        "built, so it lists exactly what `barkbench COMMAND --help` shows.\n",
        table(
            ("command", "what it does"),
            [(f"[{code(name)}](#{name})", cell(sub.description or "")) for name, sub in subcommands.items()],
        ),
    ]
    for name, sub in subcommands.items():
        out.append(f"## `barkbench {name}` {{#{name}}}\n")
        out.append(f"{cell(sub.description or '')}\n")
        out.append(f"```text\n{sub.format_usage().strip()}\n```\n")
        rows = [
            _argument_row(action, sub.prog)
            for action in sub._actions
            if not isinstance(action, argparse._HelpAction) and action.help != argparse.SUPPRESS
        ]
        if rows:
            out.append(table(("argument", "value", "default", "what it does"), rows))
        if name in cli.PASS_THROUGH:
            out.append("Arguments it does not know are passed on to pytest, in their order.\n")
    return "\n".join(out)


# -- the extra_info keys: barkbench.record --------------------------------------------------------------------------


def record_page() -> str:
    from barkbench import record

    out = [
        "# The `extra_info` keys\n",
        "What barkbench records for each benchmark in pytest-benchmark's JSON (`benchmarks[].extra_info`). Every "
        f"key is a field of `barkbench.record.Record`, record format {record.FORMAT_VERSION} (the "
        f"`{record.FORMAT_KEY}` key); this page is generated from those definitions when the site is built. A key "
        "is written when it has a value; the keys of one group are written together (null where a value was "
        "measured as absent). *Better* says which direction is an improvement, for figures that can improve.\n",
    ]
    groups: dict[str | None, list[Any]] = {}
    for info in record.FIELDS.values():
        groups.setdefault(info.group, []).append(info)
    for group, infos in groups.items():
        out.append(f"## {group or 'keys written on their own'}\n")
        rows = [(code(i.key), i.kind.name, cell(i.unit) or "—", i.better or "—", cell(i.meaning)) for i in infos]
        out.append(table(("key", "kind", "unit", "better", "meaning"), rows))
    out.append("## A `stages` entry\n")
    out.append(
        "`stages` maps each stage (`semantic`, `coarse`, `fine`, `codec`) to these figures "
        "(`barkbench.record.Stage`):\n"
    )
    rows = [
        (code(i.key), i.kind.name, cell(i.unit) or "—", i.better or "—", cell(i.meaning))
        for i in record.STAGE_FIELDS.values()
    ]
    out.append(table(("key", "kind", "unit", "better", "meaning"), rows))
    return "\n".join(out)


#: Generated page (its path in the site's docs) -> the function that writes it.
PAGES: dict[str, Callable[[], str]] = {
    "reference/options.md": options_page,
    "reference/commands.md": commands_page,
    "reference/record.md": record_page,
}


def on_files(files: Any, config: Any) -> Any:
    """mkdocs hook: add the generated pages to the site's files before the navigation is built."""
    from mkdocs.structure.files import File

    for path, build in PAGES.items():
        files.append(File.generated(config, path, content=build()))
    return files


def main(argv: Sequence[str] | None = None) -> int:
    names = {path.rpartition("/")[2].removesuffix(".md"): build for path, build in PAGES.items()}
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0] not in names:
        print(f"usage: python docs/gen_reference.py {{{','.join(names)}}}", file=sys.stderr)
        return 2
    sys.stdout.write(names[args[0]]())
    return 0


if __name__ == "__main__":
    sys.exit(main())
