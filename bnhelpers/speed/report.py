"""Reading benchmark results: copy bandwidth, time ratios, the table, the targets and the headline lines.

Works on the :class:`bnhelpers.speed.bn_speed.Timing` records that
:func:`bnhelpers.speed.bn_speed.benchmark` and :func:`bnhelpers.speed.bn_speed.xla_parts` return.
Every time is a median over repeats; the table's "spread" is ``(max - min) / median`` of those repeats.
A variant's time in a ratio is its faster of graph mode and XLA (what a user would pick), unless
``jit=`` is given. "Largest input" means the largest shape timed in that dtype.

Targets (issue 13, on the largest input): fused forward+backward >= 3x faster than Keras 3's layer and
>= 60 % of the copy's GB/s; fused float16 forward >= 30 % of the float16 copy's GB/s.

Chapters: 8.
"""

from __future__ import annotations

import math
from dataclasses import asdict, fields
from typing import Sequence

import numpy as np

from ..core.validation import check_positive_int
from .bn_speed import BYTES_PER_ELEMENT_MOVED, MODES, PARTS, Timing

__all__ = ["TARGETS", "as_records", "best_share", "copy_bandwidth", "copy_reference", "fastest", "from_records",
           "ratio", "summary_lines", "target_lines", "timing_table", "xla_lines"]

# (name, kind, variant, mode, dtype, threshold): kind "speedup" = keras time / variant time, "copy" = share of copy
TARGETS = (
    ("keras / fused time, float32 forward+backward", "speedup", "fused", "forward+backward", "float32", 3.0),
    ("fused GB/s / copy, float32 forward+backward", "copy", "fused", "forward+backward", "float32", 0.60),
    ("fused GB/s / copy, float16 forward", "copy", "fused", "forward", "float16", 0.30),
)


_ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}


def _ok(t: Timing) -> bool:
    return t.status == "ok"


def copy_reference(results: Sequence[Timing]) -> dict:
    """``{(shape, dtype): Timing}``: the fastest copy (any implementation, graph or XLA) per input."""
    best = {}
    for t in results:
        if t.mode == "copy" and _ok(t):
            key = (t.shape, t.dtype)
            if key not in best or t.gb_per_s > best[key].gb_per_s:
                best[key] = t
    return best


def copy_bandwidth(results: Sequence[Timing]) -> dict:
    """``{(shape, dtype): GB/s}`` of the fastest copy in ``results`` (:func:`copy_reference`)."""
    return {key: t.gb_per_s for key, t in copy_reference(results).items()}


def ratio(results: Sequence[Timing], numerator: str, denominator: str, **match) -> list[float]:
    """Time ratios ``numerator / denominator`` for every setting both ran in (filtered by ``match``,
    e.g. ``jit=False``). A ratio of 1.2 means ``numerator`` takes 20 % longer."""
    def key(t):
        return (t.jit, t.mode, t.dtype, t.shape)

    def keep(t):
        return _ok(t) and all(getattr(t, k) == v for k, v in match.items())

    base = {key(t): t.seconds for t in results if t.variant == denominator and keep(t)}
    return [t.seconds / base[key(t)] for t in results
            if t.variant == numerator and keep(t) and key(t) in base]


def _largest(results, dtype):
    shapes = {t.shape for t in results if t.dtype == dtype and _ok(t)}
    return max(shapes, key=lambda s: np.prod(s)) if shapes else None


def fastest(results: Sequence[Timing], variant: str, mode: str, dtype: str = "float32", shape=None) -> Timing | None:
    """The faster of graph and XLA (smaller median) of ``variant`` in ``mode`` on ``shape``
    (default: the largest timed in ``dtype``); ``None`` if it did not run."""
    shape = tuple(shape) if shape is not None else _largest(results, dtype)
    ran = [t for t in results if (t.variant, t.mode, t.dtype, t.shape) == (variant, mode, dtype, shape) and _ok(t)]
    return min(ran, key=lambda t: t.seconds) if ran else None


def _spread(t: Timing) -> str:
    if math.isnan(t.seconds_min) or math.isnan(t.seconds_max):
        return f"{'-':>6}"
    return f"{100 * (t.seconds_max - t.seconds_min) / t.seconds:5.0f}%"


def timing_table(results: Sequence[Timing]) -> str:
    """A plain-text table: one row per shape, dtype, mode and variant; median ms, spread and GB/s for
    graph and XLA, and the better of the two GB/s as a percentage of the copy's (:func:`copy_bandwidth`).
    """
    copy_gb_per_s = copy_bandwidth(results)
    rows = {}
    for t in results:
        rows.setdefault((t.shape, t.dtype, t.mode, t.variant), {})[t.jit] = t
    header = (f"{'shape (NHWC)':<16} {'dtype':<7} {'mode':<16} {'variant':<14} "
              f"{'graph ms':>9} {'spread':>6} {'GB/s':>6} {'XLA ms':>9} {'spread':>6} {'GB/s':>6} {'best/copy':>9}")
    lines = [header, "-" * len(header)]
    for (shape, dtype, mode, variant), by_jit in rows.items():
        cells = []
        for flag in (False, True):
            t = by_jit.get(flag)
            ok = t is not None and _ok(t)
            cells.append(f"{t.seconds * 1e3:9.3f} {_spread(t)} {t.gb_per_s:6.1f}" if ok
                         else f"{'-':>9} {'-':>6} {'-':>6}")
        speeds = [t.gb_per_s for t in by_jit.values() if _ok(t)]
        copy = copy_gb_per_s.get((shape, dtype))
        share = f"{100 * max(speeds) / copy:8.0f}%" if speeds and copy else f"{'-':>9}"
        lines.append(f"{'x'.join(map(str, shape)):<16} {dtype:<7} {mode:<16} {variant:<14} "
                     f"{cells[0]} {cells[1]} {share}")
    return "\n".join(lines)


def best_share(results: Sequence[Timing], shape=None, dtype: str = "float32") -> dict:
    """``{mode: (variant, jit, fraction of copy GB/s)}`` of the fastest BN variant per mode,
    on ``shape`` (default: the largest timed) and ``dtype``."""
    ok = [t for t in results if _ok(t) and t.dtype == dtype and t.mode in MODES]
    if not ok:
        return {}
    shape = tuple(shape) if shape is not None else max({t.shape for t in ok}, key=lambda s: np.prod(s))
    copy = copy_bandwidth(results).get((shape, dtype))
    best = {}
    for t in ok:
        if t.shape == shape and copy and (t.mode not in best or t.gb_per_s / copy > best[t.mode][2]):
            best[t.mode] = (t.variant, t.jit, t.gb_per_s / copy)
    return best


def _mode_name(t: Timing) -> str:
    return "XLA" if t.jit else "graph"


def target_lines(results: Sequence[Timing], llc_bytes: int | None = None) -> list[str]:
    """One line per target of :data:`TARGETS`: the measured value, the target, ``met``/``not met``
    (or why it was not measured), on the largest input of the target's dtype. Given the last-level
    cache's ``llc_bytes``, a line on an input smaller than 4x it says so: the targets are set for such inputs."""
    if llc_bytes is not None:
        check_positive_int(llc_bytes=llc_bytes)
    lines = []
    for name, kind, variant, mode, dtype, threshold in TARGETS:
        shape = _largest(results, dtype)
        mine = fastest(results, variant, mode, dtype, shape) if shape else None
        other = (fastest(results, "keras", mode, dtype, shape) if kind == "speedup"
                 else copy_reference(results).get((shape, dtype))) if shape else None
        if mine is None or other is None:
            lines.append(f"target {name}: not measured (no {variant if mine is None else 'reference'} "
                         f"timing in {dtype} {mode})")
            continue
        value = other.seconds / mine.seconds if kind == "speedup" else mine.gb_per_s / other.gb_per_s
        shown = (f"{value:.2f}x (target >= {threshold:g}x)" if kind == "speedup"
                 else f"{100 * value:.0f}% (target >= {100 * threshold:.0f}%)")
        how = (f"keras {_mode_name(other)} {other.seconds * 1e3:.1f} ms / fused {_mode_name(mine)} "
               f"{mine.seconds * 1e3:.1f} ms" if kind == "speedup" else
               f"fused {_mode_name(mine)} {mine.gb_per_s:.1f} GB/s / {other.variant} {_mode_name(other)} "
               f"{other.gb_per_s:.1f} GB/s")
        size = int(np.prod(shape)) * _ITEMSIZE.get(dtype, 4)
        small = (f"; input only {size / llc_bytes:.1f} x LLC, the targets are for >= 4 x"
                 if llc_bytes is not None and size < 4 * llc_bytes else "")
        lines.append(f"target {name}: {shown} {'met' if value >= threshold else 'not met'} "
                     f"[{'x'.join(map(str, shape))}; {how}{small}]")
    return lines


def xla_lines(parts: Sequence[Timing], passes: dict | None = None) -> list[str]:
    """The XLA finding: XLA / graph time per piece of BN (from :func:`bnhelpers.speed.bn_speed.xla_parts`)
    and, per ``"variant mode"`` key of ``passes`` (:func:`bnhelpers.speed.bn_speed.hlo_passes` results), the
    compiled program's traffic in x-sized tensors against what the call's interface needs."""
    by = {(t.mode, t.jit): t for t in parts if _ok(t)}
    cells = [f"{mode} {by[(mode, True)].seconds / by[(mode, False)].seconds:.2f}x"
             for mode in PARTS if (mode, True) in by and (mode, False) in by]
    lines = []
    if cells:
        shape = "x".join(map(str, next(iter(by.values())).shape))
        lines.append(f"XLA / graph time on {shape}: " + ", ".join(cells))
    for key, c in (passes or {}).items():
        mode = key.split(" ", 1)[1] if " " in key else "forward"
        interface = BYTES_PER_ELEMENT_MOVED.get(mode)
        lines.append(f"XLA's optimized HLO, {key}: {c['kernels']} kernels, {c['reading_x']} read x; they read "
                     f"{c['reads']:.1f} S and write {c['writes']:.1f} S = {c['reads'] + c['writes']:.1f} S "
                     f"(the call's interface: {interface} S)")
    return lines


def summary_lines(results: Sequence[Timing], parts: Sequence[Timing] = (), passes: dict | None = None,
                  llc_bytes: int | None = None) -> list[str]:
    """The headline numbers: the targets (:func:`target_lines`), bnhelpers / keras time ratios, the best share
    of copy bandwidth per dtype and mode, and (given ``parts``/``passes``) the XLA finding (:func:`xla_lines`)."""
    lines = target_lines(results, llc_bytes)
    for mode in ("forward", "forward+backward"):
        for flag in (False, True):
            ratios = ratio(results, "bnhelpers", "keras", mode=mode, jit=flag)
            if ratios:
                lines.append(f"bnhelpers / keras time, {mode:<16} {'XLA' if flag else 'graph':<5}: "
                             f"median {np.median(ratios):.2f}, worst {max(ratios):.2f} over {len(ratios)} settings")
    two = [fastest(results, v, "statistics") for v in ("two_pass", "one_pass")]
    if all(two):
        lines.append(f"statistics on the largest float32 input: one_pass / two_pass time "
                     f"{two[1].seconds / two[0].seconds:.2f}")
    for dtype in sorted({t.dtype for t in results}):
        for mode, (variant, flag, share) in best_share(results, dtype=dtype).items():
            lines.append(f"largest input, {dtype}, {mode:<16}: best is {variant} ({'XLA' if flag else 'graph'}) "
                         f"at {100 * share:.0f}% of copy bandwidth")
    return lines + xla_lines(parts, passes)


def as_records(results: Sequence[Timing]) -> list[dict]:
    """The results as plain dicts (e.g. for ``json.dump``)."""
    return [asdict(t) for t in results]


def from_records(records: Sequence[dict]) -> list[Timing]:
    """:class:`Timing` objects back from :func:`as_records` (after a JSON round trip: lists become tuples)."""
    names = {f.name for f in fields(Timing)}
    out = []
    for record in records:
        missing = {"variant", "jit", "mode", "dtype", "shape", "seconds", "gb_per_s", "error"} - set(record)
        if missing:
            raise ValueError(f"a timing record lacks {sorted(missing)}")
        values = {k: v for k, v in record.items() if k in names}
        values["shape"] = tuple(int(s) for s in values["shape"])
        out.append(Timing(**{k: (_float(v) if k in _FLOATS else v) for k, v in values.items()}))
    return out


_FLOATS = {"seconds", "gb_per_s", "error", "seconds_min", "seconds_max"}


def _float(value):
    """JSON from Python writes NaN as NaN; a null from elsewhere reads as NaN too."""
    return float("nan") if value is None else float(value)
