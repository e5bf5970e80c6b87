"""What notebooks print: ``summaries`` (mean ± spread over seeds) and ``tables`` (text tables, magnitudes)."""
