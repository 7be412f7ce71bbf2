"""The machine-limits cache file: where it is, and reading and writing its entries (plain JSON; no torch).

``measure.limits`` measures the entries and stores them here; ``measure.device.machine_info`` and ``barkbench
doctor`` read them. A module of its own so that the device facts read the file without importing the probe (which
imports the device module): the imports run one way.

The file is ``<cache folder>/machine-limits.json``: ``{"entries": {key: entry}}``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from barkbench.measure.sources import cache_dir

CACHE_FILE = "machine-limits.json"


def cache_path() -> Path:
    """The cache file in the cache folder (``sources.cache_dir``)."""
    return cache_dir() / CACHE_FILE


def read_entries(path: Path) -> dict[str, Any]:
    """The entries by key; empty when the file is missing, unreadable or not the cache's format."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    entries = data.get("entries") if isinstance(data, dict) else None
    return entries if isinstance(entries, dict) else {}


def write_entries(path: Path, entries: dict[str, Any]) -> None:
    """Replace the file with ``entries`` at once (a temporary file renamed over it); call under the file's lock."""
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"entries": entries}, indent=1, sort_keys=True))
    tmp.replace(path)


def cached_entries(path: Path | None = None) -> list[dict[str, Any]]:
    """Every limits entry measured on this machine (for ``machine_info`` and doctor); reads the file only."""
    return list(read_entries(path or cache_path()).values())
