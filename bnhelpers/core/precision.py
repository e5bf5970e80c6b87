"""Floating-point precision of BN's statistics: variance algorithms in a chosen dtype, and errors against float64.

Shapes: ``x`` is ``(m, C)``, ``m`` values of ``C`` features; the statistics reduce over axis 0 and have
shape ``(C,)``, as BN's do for dense inputs (reshape NHWC images to ``(N*H*W, C)`` first). Every
variance here is the *biased* one (divides by ``m``), as BN uses it.

The three algorithms run in ``dtype`` (``"float32"``, ``"float16"``, ``"bfloat16"`` or ``"float64"``):
each operation's result is rounded to ``dtype``, and the rows are visited one after the other in a fixed
order, so the result is the same on every CPU (unlike a framework's reduction, whose order may depend on
the machine):

- :func:`one_pass_variance`: the "textbook" formula ``E[x^2] - E[x]^2`` from running sums of ``x`` and
  ``x^2`` (Chan, Golub & LeVeque, 1983). Catastrophic cancellation: when ``|mean| >> std`` both terms are
  about ``mean^2`` and their difference keeps few or no correct digits; it can come out negative.
- :func:`two_pass_variance`: the mean first, then the mean of ``(x - mean)^2``; non-negative, accurate.
- :func:`welford_variance`: Welford's one-pass update of the mean and the sum of squared deviations,
  as accurate as two passes while reading the data once.

:func:`unit_roundoff` is ``u = 2^-p`` (``p`` the significand's bits: 24, 11, 8, 53), the largest relative
error of rounding one number; :func:`rounding_floor` is the error that rounding the *input* to ``dtype``
alone puts into BN's output, about ``|mean| * u / std``, which no way of computing the statistics can undo.
:func:`max_error` compares a result with a float64 reference (``inf`` if anything is not finite).

Chapters: 11.
"""

from __future__ import annotations

import numpy as np

from .validation import check_float

__all__ = ["unit_roundoff", "as_dtype", "one_pass_variance", "two_pass_variance", "welford_variance",
           "rounding_floor", "max_error"]

_BITS = {"float16": 11, "bfloat16": 8, "float32": 24, "float64": 53}


def _dtype_name(dtype) -> str:
    name = getattr(dtype, "name", None) or (dtype if isinstance(dtype, str) else None)
    if name is None:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = str(dtype)
    if name not in _BITS:
        raise ValueError(f"dtype must be one of {sorted(_BITS)}, got {dtype!r}")
    return name


def as_dtype(dtype) -> np.dtype:
    """The NumPy dtype for ``"float16"``, ``"bfloat16"`` (from ``ml_dtypes``), ``"float32"``, ``"float64"``."""
    name = _dtype_name(dtype)
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def unit_roundoff(dtype) -> float:
    """``2^-p``: the largest relative error of rounding a real number (in range) to ``dtype``."""
    return 2.0 ** -_BITS[_dtype_name(dtype)]


def _matrix(x, dtype):
    check_float(x)
    values = np.asarray(x)
    if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 1:
        raise ValueError(f"x must have shape (m, C) with m, C >= 1, got {values.shape}")
    return values.astype(as_dtype(dtype))


def _mean(rows, dt):
    total = np.zeros(rows.shape[1], dtype=dt)
    for row in rows:  # one row at a time: the same order, hence the same rounding, on every CPU
        total = (total + row).astype(dt)
    return (total / dt.type(rows.shape[0])).astype(dt)


def one_pass_variance(x, dtype="float32") -> np.ndarray:
    """``E[x^2] - E[x]^2`` per column of ``x`` ``(m, C)``, every step rounded to ``dtype``; may be negative."""
    dt = as_dtype(dtype)
    rows = _matrix(x, dt)
    with np.errstate(over="ignore", invalid="ignore"):
        mean = _mean(rows, dt)
        mean_of_squares = _mean((rows * rows).astype(dt), dt)
        return (mean_of_squares - (mean * mean).astype(dt)).astype(dt)


def two_pass_variance(x, dtype="float32") -> np.ndarray:
    """Mean of ``(x - mean)^2`` per column of ``x`` ``(m, C)``, the mean computed first; in ``dtype``."""
    dt = as_dtype(dtype)
    rows = _matrix(x, dt)
    with np.errstate(over="ignore", invalid="ignore"):
        deviations = (rows - _mean(rows, dt)).astype(dt)
        return _mean((deviations * deviations).astype(dt), dt)


def welford_variance(x, dtype="float32") -> np.ndarray:
    """Welford's update per column of ``x`` ``(m, C)``: one pass, in ``dtype``, without the cancellation.

    After row ``k`` (1-based): ``delta = x_k - mean``; ``mean += delta / k``; ``M2 += delta * (x_k - mean)``;
    the variance is ``M2 / m``.
    """
    dt = as_dtype(dtype)
    rows = _matrix(x, dt)
    mean = np.zeros(rows.shape[1], dtype=dt)
    m2 = np.zeros(rows.shape[1], dtype=dt)
    with np.errstate(over="ignore", invalid="ignore"):
        for k, row in enumerate(rows, start=1):
            delta = (row - mean).astype(dt)
            mean = (mean + (delta / dt.type(k)).astype(dt)).astype(dt)
            m2 = (m2 + (delta * (row - mean).astype(dt)).astype(dt)).astype(dt)
        return (m2 / dt.type(rows.shape[0])).astype(dt)


def rounding_floor(mean, std, dtype="float32"):
    """``|mean| * u / std``: the error in BN's output that rounding its input to ``dtype`` costs.

    Rounding changes an input near ``mean`` by up to ``|mean| * u``; BN divides by ``std``. ``mean`` and
    ``std`` are numbers or arrays (``std > 0``); returns a float or an array of floats.
    """
    mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
        raise ValueError("mean must be finite and std finite and > 0")
    floor = np.abs(mean) * unit_roundoff(dtype) / std
    return float(floor) if floor.ndim == 0 else floor


def max_error(result, reference) -> float:
    """``max |result - reference|`` in float64; ``inf`` if ``result`` holds a NaN or an infinity."""
    result = np.asarray(result).astype(np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if result.shape != reference.shape:
        raise ValueError(f"result has shape {result.shape}, reference {reference.shape}")
    if result.size == 0:
        raise ValueError("nothing to compare: empty arrays")
    if not np.all(np.isfinite(result)):
        return float("inf")
    return float(np.abs(result - reference).max())
