"""Reading benchmark results: copy bandwidth, time ratios, the table and the headline lines.

Works on the :class:`bnhelpers.speed.bn_speed.Timing` records that
:func:`bnhelpers.speed.bn_speed.benchmark` returns.

Chapters: 8.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Sequence

import numpy as np

from .bn_speed import MODES, Timing

__all__ = ["copy_bandwidth", "ratio", "timing_table", "best_share", "summary_lines", "as_records"]


def copy_bandwidth(results: Sequence[Timing]) -> dict:
    """``{(shape, dtype): GB/s}``: the faster of the graph and XLA copies in ``results``."""
    best = {}
    for t in results:
        if t.variant == "copy" and t.status == "ok":
            key = (t.shape, t.dtype)
            best[key] = max(best.get(key, 0.0), t.gb_per_s)
    return best


def ratio(results: Sequence[Timing], numerator: str, denominator: str, **match) -> list[float]:
    """Time ratios ``numerator / denominator`` for every setting both ran in (filtered by ``match``,
    e.g. ``jit=False``). A ratio of 1.2 means ``numerator`` takes 20 % longer."""
    def key(t):
        return (t.jit, t.mode, t.dtype, t.shape)

    def keep(t):
        return t.status == "ok" and all(getattr(t, k) == v for k, v in match.items())

    base = {key(t): t.seconds for t in results if t.variant == denominator and keep(t)}
    return [t.seconds / base[key(t)] for t in results
            if t.variant == numerator and keep(t) and key(t) in base]


def timing_table(results: Sequence[Timing]) -> str:
    """A plain-text table: one row per shape, dtype, mode and variant; ms and GB/s for graph
    and XLA, and the better of the two GB/s as a percentage of the copy's (:func:`copy_bandwidth`).
    """
    copy_gb_per_s = copy_bandwidth(results)
    rows = {}
    for t in results:
        rows.setdefault((t.shape, t.dtype, t.mode, t.variant), {})[t.jit] = t
    header = (f"{'shape (NHWC)':<18} {'dtype':<8} {'mode':<17} {'variant':<15} "
              f"{'graph ms':>9} {'GB/s':>7} {'XLA ms':>9} {'GB/s':>7} {'best/copy':>9}")
    lines = [header, "-" * len(header)]
    for (shape, dtype, mode, variant), by_jit in rows.items():
        cells = []
        for flag in (False, True):
            t = by_jit.get(flag)
            ok = t is not None and t.status == "ok"
            cells.append(f"{t.seconds * 1e3:9.3f} {t.gb_per_s:7.1f}" if ok else f"{'-':>9} {'-':>7}")
        speeds = [t.gb_per_s for t in by_jit.values() if t.status == "ok"]
        copy = copy_gb_per_s.get((shape, dtype))
        share = f"{100 * max(speeds) / copy:8.0f}%" if speeds and copy else f"{'-':>9}"
        lines.append(f"{'x'.join(map(str, shape)):<18} {dtype:<8} {mode:<17} {variant:<15} "
                     f"{cells[0]} {cells[1]} {share}")
    return "\n".join(lines)


def best_share(results: Sequence[Timing], shape=None, dtype: str = "float32") -> dict:
    """``{mode: (variant, jit, fraction of copy GB/s)}`` of the fastest BN variant per mode,
    on ``shape`` (default: the largest timed) and ``dtype``."""
    ok = [t for t in results if t.status == "ok" and t.dtype == dtype and t.variant != "copy"]
    if not ok:
        return {}
    shape = tuple(shape) if shape is not None else max({t.shape for t in ok}, key=lambda s: np.prod(s))
    copy = copy_bandwidth(results).get((shape, dtype))
    best = {}
    for t in ok:
        if t.shape == shape and copy and (t.mode not in best or t.gb_per_s / copy > best[t.mode][2]):
            best[t.mode] = (t.variant, t.jit, t.gb_per_s / copy)
    return best


def summary_lines(results: Sequence[Timing]) -> list[str]:
    """The headline numbers: bnhelpers / keras time ratios and the best share of copy bandwidth."""
    lines = []
    for mode in MODES:
        for flag in (False, True):
            ratios = ratio(results, "bnhelpers", "keras", mode=mode, jit=flag)
            if ratios:
                lines.append(f"bnhelpers / keras time, {mode:<16} {'XLA' if flag else 'graph':<5}: "
                             f"median {np.median(ratios):.2f}, worst {max(ratios):.2f} over {len(ratios)} settings")
    for dtype in sorted({t.dtype for t in results}):
        for mode, (variant, flag, share) in best_share(results, dtype=dtype).items():
            lines.append(f"largest input, {dtype}, {mode:<16}: best is {variant} ({'XLA' if flag else 'graph'}) "
                         f"at {100 * share:.0f}% of copy bandwidth")
    return lines


def as_records(results: Sequence[Timing]) -> list[dict]:
    """The results as plain dicts (e.g. for ``json.dump``)."""
    return [asdict(t) for t in results]
