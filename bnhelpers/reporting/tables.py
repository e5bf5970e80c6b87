"""Text that notebooks print: fixed-width tables and orders of magnitude.

Notebooks print text rather than only drawing, so that nbval checks every number a
cell shows. :func:`format_table` lays out rows; :func:`format_bound` prints a
round-off magnitude the way every CPU agrees on (see the README, "Writing a chapter").

Chapters: 7, 8, 9, 10, 11.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["format_table", "format_bound"]


def format_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A fixed-width text table (what the notebooks print, so nbval checks every cell)."""
    header = [str(h) for h in header]
    rows = [[str(c) for c in row] for row in rows]
    if any(len(row) != len(header) for row in rows):
        raise ValueError("every row needs one entry per column")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: " | ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(header), "-+-".join("-" * w for w in widths), *map(line, rows)])


def format_bound(value) -> str:
    """``"below 1e-15"``: the smallest power of ten above ``|value|`` (``"0"`` for zero).

    For differences that are round-off: their digits change from CPU to CPU, their order of magnitude only
    when the value sits close to a power of ten, so that is all a notebook prints of them.
    """
    value = abs(float(value))
    if not np.isfinite(value):
        raise ValueError(f"value must be finite, got {value}")
    if value == 0:
        return "0"
    return f"below 1e{int(np.floor(np.log10(value))) + 1}"
