"""bnhelpers.reporting.tables: plain-text tables and bounds the notebooks print."""

import pytest

from bnhelpers.reporting.tables import format_bound, format_table


def test_format_bound_gives_the_next_power_of_ten():
    assert format_bound(6.5e-16) == "below 1e-15"
    assert format_bound(-1.8e-15) == "below 1e-14"
    assert format_bound(1e-15) == "below 1e-14"          # strictly above the value
    assert format_bound(0.5) == "below 1e0" and format_bound(123.0) == "below 1e3"
    assert format_bound(0.0) == "0"
    with pytest.raises(ValueError, match="value must be finite, got nan"):
        format_bound(float("nan"))


def test_format_table():
    text = format_table(["a", "long header"], [[1, "x"], ["wide cell", 2.5]])
    lines = text.splitlines()
    assert lines[0] == "a         | long header"
    assert lines[1] == "----------+------------"
    assert lines[3] == "wide cell | 2.5"
    with pytest.raises(ValueError, match="every row needs one entry per column"):
        format_table(["a", "b"], [[1]])
