"""The documentation's Layout page (docs/layout.md) is the map of the package: every module it names exists, and every
module of the package is on it (by name, or under a folder row such as ``barkbench/measure/optimize/``). The import
rules it states are checked by import-linter (``lint-imports``, contracts in pyproject.toml), run here too so a test
run catches a broken layer without CI."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "barkbench"


def layout_section() -> str:
    text = (REPO / "docs" / "layout.md").read_text()
    match = re.search(r"^## Layout\n(.*?)(?=^## |\Z)", text, re.DOTALL | re.MULTILINE)
    assert match, "docs/layout.md has no '## Layout' section"
    return match.group(1)


def listed_paths(section: str) -> set[str]:
    """The paths in the first column of the Layout table, relative to ``src/``: a cell such as
    ``barkbench/measure/runner.py``, ``worker.py`` names ``barkbench/measure/worker.py`` too (same folder)."""
    paths: set[str] = set()
    for row in re.findall(r"^\| (`[^|]*`) \|", section, re.MULTILINE):
        folder = ""
        for name in re.findall(r"`([^`]+)`", row):
            if "/" in name:
                folder = name if name.endswith("/") else name.rpartition("/")[0] + "/"
                paths.add(name)
            else:
                paths.add(folder + name)
    return paths


def package_modules() -> set[str]:
    """Every module of the package as ``barkbench/…/name.py``, ``__init__.py`` files left out."""
    return {
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py" and "__pycache__" not in path.parts
    }


def test_listed_paths_parse_a_row_with_several_modules() -> None:
    section = "| `barkbench/measure/runner.py`, `worker.py` | x |\n| `barkbench/commands/` | y |\n"
    assert listed_paths(section) == {
        "barkbench/measure/runner.py",
        "barkbench/measure/worker.py",
        "barkbench/commands/",
    }


def test_every_module_the_layout_names_exists() -> None:
    missing = sorted(p for p in listed_paths(layout_section()) if not (PACKAGE.parent / p).exists())
    assert not missing, f"docs/layout.md names modules that do not exist: {missing}"


def test_every_module_of_the_package_is_on_the_layout() -> None:
    listed = listed_paths(layout_section())
    folders = tuple(p for p in listed if p.endswith("/"))
    unlisted = sorted(m for m in package_modules() if m not in listed and not m.startswith(folders))
    assert not unlisted, f"modules missing from docs/layout.md: {unlisted}"


def test_the_import_contracts_hold() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint_imports is None:
        pytest.skip("import-linter is not installed in this environment (pip install import-linter)")
    done = subprocess.run(
        [lint_imports, "--no-logo", "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
