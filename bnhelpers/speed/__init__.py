"""Benchmarks: ``timing`` (timing calls, the device), ``bn_speed`` (BN variants against a copy),
``report`` (ratios, tables, headline lines)."""
