"""What notebooks print: ``summaries`` (mean ± spread over seeds), ``tables`` (text tables, magnitudes)
and ``plots`` (a figure glued for another page)."""
