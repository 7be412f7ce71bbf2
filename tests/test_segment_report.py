"""Long-form per-piece figures in `barkbench report`, on a crafted run JSON (no model)."""

from __future__ import annotations

import json
from pathlib import Path

from barkbench.results.load import load_run
from barkbench.results.report import build_report, segment_table

CPU_RUN = Path(__file__).parent / "data" / "run-cpu.json"


def _long_form_run(tmp_path: Path, pieces: list[float]) -> Path:
    data = json.loads(CPU_RUN.read_text())
    bench = next(b for b in data["benchmarks"] if b["extra_info"].get("variant") == "sdpa-fp32-bs1")
    bench["extra_info"]["segment_seconds"] = pieces
    path = tmp_path / "long-form.json"
    path.write_text(json.dumps(data))
    return path


def test_the_report_shows_each_piece_of_a_long_form_run(tmp_path: Path) -> None:
    run = load_run(_long_form_run(tmp_path, [0.41, 0.62, 0.38]))
    markdown = build_report([run], output_dir=None).markdown
    assert "Long-form (`--bark-long-form`)" in markdown
    # sdpa-fp32-bs1's latency in the crafted run is 1.46 s: 1.41 s in the pieces, 0.05 s between them.
    assert "| `sdpa-fp32-bs1` | 3 | 1.46 | 1.41 | 0.0500 | 0.620 (piece 2) | 0.410, 0.620, 0.380 |" in markdown


def test_no_long_form_rows_no_table() -> None:
    assert segment_table(load_run(CPU_RUN).benchmarks) is None
    assert "Long-form" not in build_report([load_run(CPU_RUN)], output_dir=None).markdown
