"""Summaries over seeds for the paper reproductions: mean ± spread, learning-curve read-outs.

Conventions: per-seed results are stacked along axis 0 (shape ``(seeds, ...)``);
"spread" is the sample standard deviation over seeds (``ddof=1``). The text a notebook
prints around them comes from :mod:`bnhelpers.reporting.tables`.

Chapters: 7, 10, 11.
"""

from __future__ import annotations


import numpy as np

__all__ = ["mean_sd", "format_mean_sd", "first_step_reaching", "gap_recovered"]


def mean_sd(values, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample standard deviation (``ddof=1``; 0 for a single seed) along ``axis``."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or values.shape[axis] == 0:
        raise ValueError("need at least one value")
    sd = values.std(axis=axis, ddof=1) if values.shape[axis] > 1 else np.zeros_like(values.mean(axis=axis))
    return values.mean(axis=axis), sd


def format_mean_sd(values, scale: float = 1.0, digits: int = 1) -> str:
    """``"m ± s"`` of a 1-D list of per-seed values times ``scale``, rounded to ``digits``
    (``"not reached in k/n seeds"`` if some value is infinite, e.g. from :func:`first_step_reaching`)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"values must be 1-D (one per seed), got shape {values.shape}")
    missing = int(np.sum(~np.isfinite(values)))
    if missing:
        return f"not reached in {missing}/{len(values)} seeds"
    m, s = mean_sd(values * scale)
    return f"{round(float(m), digits) + 0.0:.{digits}f} ± {round(float(s), digits) + 0.0:.{digits}f}"


def first_step_reaching(steps, values, threshold: float) -> float:
    """The first entry of ``steps`` whose ``values`` entry is ``>= threshold``; ``inf`` if none."""
    steps, values = np.asarray(steps), np.asarray(values)
    if steps.shape != values.shape or steps.ndim != 1:
        raise ValueError(f"steps and values must be 1-D of one length, got {steps.shape} and {values.shape}")
    hit = np.flatnonzero(values >= threshold)
    return float(steps[hit[0]]) if len(hit) else float("inf")


def gap_recovered(broken, repaired, reference):
    """Fraction of the gap ``reference - broken`` that ``repaired`` closes: 0 none, 1 all of it."""
    broken, repaired, reference = (np.asarray(v, dtype=np.float64) for v in (broken, repaired, reference))
    gap = reference - broken
    if np.any(gap == 0):
        raise ValueError("broken and reference are equal: there is no gap to recover")
    return (repaired - broken) / gap


