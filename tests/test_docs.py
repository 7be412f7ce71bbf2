"""The documentation: the README stays a landing page whose links land, the reference pages the site generates from
the code (docs/gen_reference.py, a mkdocs hook) list every option ``pytest --help`` and ``barkbench COMMAND --help``
list, and ``.ci/run`` builds the site strictly, failing CI when the build fails. The links between the site's pages
are mkdocs' to check (``--strict``, in ``.ci/run``); none of these tests needs mkdocs."""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
import unicodedata
from pathlib import Path
from types import ModuleType

import pytest

from barkbench import cli, record

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
#: The issue's aim for a README that fits on a screen or two.
README_MAX_LINES = 250


@functools.cache
def generator() -> ModuleType:
    """docs/gen_reference.py, the mkdocs hook that writes the reference pages (not a package module)."""
    spec = importlib.util.spec_from_file_location("barkbench_docs_gen_reference", REPO / "docs" / "gen_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def slug(heading: str) -> str:
    """The anchor Python-Markdown's toc extension (mkdocs' default) gives a heading (its ``slugify``), or the one
    the heading names (``{#name}``, attr_list)."""
    explicit = re.search(r"\{#([^}]+)\}\s*$", heading)
    if explicit:
        return explicit.group(1)
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(markdown: str) -> set[str]:
    found, fenced = set(), False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"#{1,6} (.+)", line)):
            found.add(slug(match.group(1)))
    return found


def links(markdown: str) -> list[str]:
    """Every Markdown link target outside code blocks and code spans."""
    targets, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            targets += re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`]*`", "", line))
    return targets


def test_the_readme_is_a_landing_page() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"
    # The two commands, and a link into the documentation.
    text = "\n".join(lines)
    assert "./dev.sh bench" in text and "./dev.sh test" in text
    assert "](docs/" in text


def test_every_link_in_the_readme_lands_on_a_file_and_heading() -> None:
    broken = []
    for target in links(README.read_text()):
        if re.match(r"[a-z]+:", target):  # https:, mailto:: not ours to check offline
            continue
        path, _, fragment = target.partition("#")
        file = (REPO / path) if path else README
        if not file.exists():
            broken.append(f"{target}: no file {path}")
        elif fragment and fragment not in anchors(file.read_text()):
            broken.append(f"{target}: {path or 'README.md'} has no heading with anchor #{fragment}")
    assert not broken, broken


def test_slug_matches_python_markdown() -> None:
    toc = pytest.importorskip("markdown.extensions.toc", reason="Markdown comes with the docs extra")
    for heading in (
        "Drift of the CPU variants: `random:bark-small`, 32 semantic tokens",
        "barkbench's SDPA for Bark, in your own code",
        "Length-normalized figures and `--bark-fixed-length`",
    ):
        assert slug(heading) == toc.slugify(heading.replace("`", ""), "-")


def bark_options_in_pytest_help(tmp_path: Path) -> set[str]:
    # From an empty folder: the options come from the installed plugin alone, no conftest of this repository.
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(re.findall(r"(?<![\w-])(--bark-[a-z0-9-]+)", done.stdout))


def test_the_options_reference_lists_every_bark_option_pytest_help_lists(tmp_path: Path) -> None:
    page = generator().options_page()
    # Only the options column: the help texts name other options too.
    on_page = {
        m
        for row in re.findall(r"^\| (`--bark-[^|]*)\|", page, re.MULTILINE)
        for m in re.findall(r"--bark-[a-z0-9-]+", row)
    }
    in_help = bark_options_in_pytest_help(tmp_path)
    assert in_help, "pytest --help lists no --bark-* option: is barkbench's plugin installed?"
    assert on_page == in_help, (sorted(in_help - on_page), sorted(on_page - in_help))


def options_in_argparse_help(text: str) -> set[str]:
    """The options an argparse help lists: the invocation column of its option lines (``  -o FILE, --output FILE``),
    not options its help texts mention."""
    found: set[str] = set()
    for line in text.splitlines():
        if match := re.match(r"  (-\S.*?)(?:\s{2,}|$)", line):
            found |= set(re.findall(r"--[a-z][a-z0-9-]*", match.group(1)))
    return found


def test_the_commands_reference_lists_every_subcommand_and_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    page = generator().commands_page()
    sections = dict(re.findall(r"^## `barkbench ([a-z-]+)`.*?\n(.*?)(?=^## |\Z)", page, re.MULTILINE | re.DOTALL))
    assert set(sections) == set(cli.SUBCOMMANDS)
    for name in cli.SUBCOMMANDS:
        assert cli.main([name, "--help"]) == 0
        in_help = options_in_argparse_help(capsys.readouterr().out) - {"--help"}
        on_page = set(re.findall(r"`(--[a-z][a-z0-9-]*)`", sections[name]))
        assert in_help <= on_page, (name, sorted(in_help - on_page))


def test_the_record_reference_lists_every_extra_info_key() -> None:
    page = generator().record_page()
    keys = set(re.findall(r"^\| `([a-z0-9_]+)` \|", page, re.MULTILINE))
    assert set(record.FIELDS) | set(record.STAGE_FIELDS) == keys


def test_a_help_text_reads_as_text_in_a_table_cell() -> None:
    cell = generator().cell
    assert cell("save DIR/<variant-id>.wav, a|b, *.json_x") == r"save DIR/&lt;variant-id&gt;.wav, a\|b, \*.json\_x"
    assert cell("see `barkbench merge` and `a|b`") == r"see `barkbench merge` and `a\|b`"


# -- .ci/run builds the site, strictly, and fails when the build fails ---------------------------------------------

# A stand-in for .venv/bin/python (and lint-imports): logs its arguments, installs nothing, runs no test, and exits with
# $FAKE_MKDOCS_STATUS for mkdocs.
FAKE_PYTHON = """#!/usr/bin/env bash
venv=$(basename "$(dirname "$(dirname "$0")")")
echo "$venv $*" >>"$FAKE_LOG"
case "$1 $2" in
  "-c "*) echo "transformers fake" ;;
  "-m mkdocs") exit "${FAKE_MKDOCS_STATUS:-0}" ;;
  "-m pytest") exit "${FAKE_PYTEST_STATUS:-0}" ;;
esac
exit 0
"""


def run_ci(tmp_path: Path, **env: str) -> tuple[int, list[str]]:
    root = tmp_path / "repo"
    if not root.exists():
        root.mkdir()
        for name in ("dev.sh", "pyproject.toml", "mkdocs.yml"):
            shutil.copy2(REPO / name, root / name)
        shutil.copytree(REPO / "constraints", root / "constraints")
        (root / ".ci").mkdir()
        shutil.copy2(REPO / ".ci" / "run", root / ".ci" / "run")
        for venv in (".venv", ".venv-legacy"):
            for tool in ("python", "lint-imports"):
                path = root / venv / "bin" / tool
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(FAKE_PYTHON)
                path.chmod(path.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "log.txt"
    log.write_text("")
    full_env = {**os.environ, "FAKE_LOG": str(log), "CI": "true", **env}
    done = subprocess.run(
        ["./.ci/run"], cwd=root, env=full_env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )
    return done.returncode, log.read_text().splitlines()


def test_ci_builds_the_site_strictly_after_the_tests_and_fails_when_it_fails(tmp_path: Path) -> None:
    if shutil.which("bash") is None:
        pytest.skip(".ci/run needs bash, which this machine lacks")
    code, log = run_ci(tmp_path)
    assert code == 0
    builds = [line for line in log if " -m mkdocs " in line]
    assert len(builds) == 1 and builds[0].startswith(".venv -m mkdocs build --strict"), builds
    # Neither --quiet (mkdocs 1.6 then lets --strict pass every warning) nor --verbose (no anchor check then).
    assert not {"-q", "--quiet", "-v", "--verbose"} & set(builds[0].split())
    assert log.index(builds[0]) > max(i for i, line in enumerate(log) if " -m pytest tests/" in line)

    code, log = run_ci(tmp_path, FAKE_MKDOCS_STATUS="1")
    assert code == 1
    # A failing test run still gets its own status, and the site is still built.
    code, log = run_ci(tmp_path, FAKE_PYTEST_STATUS="3")
    assert code == 3 and [line for line in log if " -m mkdocs " in line]
