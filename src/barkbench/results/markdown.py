"""Number formatting and Markdown tables shared by ``report`` and ``compare``.

Kept in one place so a number reads the same in every table (and in the tests that assert on it).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

#: U+2212: a real minus sign lines up with "+" in proportional fonts, unlike the hyphen.
MINUS = "\u2212"
#: Shown where a value is absent (a failed variant, a metric the run did not record).
MISSING = "—"


def relative_change(new: float | None, base: float | None) -> float | None:
    """(new - base) / base, or None when either is missing or the base is zero (no meaningful ratio)."""
    if new is None or base is None or base == 0:
        return None
    return (new - base) / base


def format_percent(change: float | None, decimals: int = 0) -> str:
    """A fraction as a signed percentage: ``-0.27`` -> ``−27 %``; rounding to zero shows ``±0 %``."""
    if change is None or not math.isfinite(change):
        return MISSING
    text = f"{abs(change) * 100:.{decimals}f}"
    if float(text) == 0:
        return f"±{text} %"
    return f"{MINUS if change < 0 else '+'}{text} %"


def significant(value: float | None, digits: int = 3) -> str:
    """``digits`` significant figures without scientific notation: 0.684931 -> 0.685, 12.34 -> 12.3."""
    if value is None or not math.isfinite(value):
        return MISSING
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def mean_pm_stddev(mean: float | None, stddev: float | None, digits: int = 3) -> str:
    """``2.00 ± 0.05``: the spread gets the mean's decimals, so the two line up digit for digit."""
    if mean is None or not math.isfinite(mean):
        return MISSING
    text = significant(mean, digits)
    if stddev is None or not math.isfinite(stddev):
        return text
    decimals = len(text.partition(".")[2])
    return f"{text} ± {stddev:.{decimals}f}"


def thousands(value: float | None) -> str:
    """Whole number with thousands separators: 2400.0 -> ``2,400``."""
    if value is None or not math.isfinite(value):
        return MISSING
    return f"{value:,.0f}"


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    numeric: Collection[int] | None = None,
    aligned: bool = False,
) -> str:
    """A GitHub-flavoured Markdown table. ``numeric`` columns (default: all but the first) are right-aligned
    so that digits line up. ``aligned`` pads every column to its widest cell, so the table also reads as is in a
    terminal (the same Markdown once rendered)."""
    numeric = range(1, len(headers)) if numeric is None else numeric
    body = [[_cell(cell) for cell in row] for row in (headers, *rows)]
    align = ["--:" if i in numeric else "---" for i in range(len(headers))]
    if aligned:
        widths = [max(3, *(len(row[i]) for row in body)) for i in range(len(headers))]
        body = [
            [
                cell.rjust(w) if i in numeric else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ]
            for row in body
        ]
        align = ["-" * (width - 1) + ":" if i in numeric else "-" * width for i, width in enumerate(widths)]
    lines = [_row(body[0]), _row(align)]
    lines.extend(_row(row) for row in body[1:])
    return "\n".join(lines)


def _cell(cell: object) -> str:
    # A "|" inside a cell (e.g. in an error message) would split the column.
    return str(cell).replace("|", "\\|")


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
