"""Finite-difference gradient checks, in the spirit of CS231n's ``gradient_check.py``.

Everything runs in NumPy float64 with centered differences, whose error is
``O(h^2)`` (truncation) plus ``O(eps_64 |f| / h)`` (round-off); ``h = 1e-5``
balances the two for functions of order one, and leaves a relative error of
about ``1e-10`` against a correct analytic gradient.

- :func:`numerical_gradient`: ``df/dx`` of a *scalar* function ``f(x)``; the
  result has the shape of ``x``;
- :func:`numerical_gradient_array`: the gradient of ``sum(f(x) * dout)`` for an
  array-valued ``f``, i.e. what a backward pass returns when the upstream
  gradient is ``dout`` (shape of ``f(x)``); the result has the shape of ``x``;
- :func:`relative_error`: ``max|a - b| / max(max(|a| + |b|), tiny)``, a single
  number for two arrays of one shape: 0 when they are equal, 1 when ``b = -a``;
  about ``1e-10`` or less means a backward pass is right, ``1e-3`` or more that
  it is wrong.

The error is normwise (largest difference over largest magnitude), not CS231n's
elementwise maximum, so an entry of the gradient that is nearly zero does not
dominate it.

Conventions: ``f`` receives a float64 copy of ``x`` with one entry moved by
``±h`` (it may keep or change that copy); ``x`` itself is never modified.

Chapters: 11.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .validation import check_float

__all__ = ["numerical_gradient", "numerical_gradient_array", "relative_error"]


def _check_args(f, x, h) -> tuple[np.ndarray, float]:
    if not callable(f):
        raise TypeError(f"f must be callable, got {f!r}")
    check_float(x, "x")
    if isinstance(h, bool) or not isinstance(h, (int, float, np.integer, np.floating)):
        raise TypeError(f"h must be a number, got {h!r}")
    if not (np.isfinite(h) and h > 0):
        raise ValueError(f"h must be a finite number > 0, got {h}")
    x = np.array(x, dtype=np.float64)          # a copy: the caller's x is never touched
    if not np.all(np.isfinite(x)):
        raise ValueError("x must hold finite numbers")
    return x, float(h)


def _centered(f, x: np.ndarray, h: float, read: Callable) -> np.ndarray:
    """``(read(f(x + h e_i)) - read(f(x - h e_i))) / 2h`` for every entry ``i`` of ``x``."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        plus = read(f(x.copy()))
        flat[i] = old - h
        minus = read(f(x.copy()))
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * h)
    return grad


def numerical_gradient(f: Callable, x, h: float = 1e-5) -> np.ndarray:
    """``df/dx`` by centered differences, float64, shape of ``x``; ``f(x)`` must return one number."""
    x, h = _check_args(f, x, h)

    def scalar(value) -> float:
        value = np.asarray(value, dtype=np.float64)
        if value.size != 1:
            raise ValueError(f"f must return a scalar, got shape {value.shape}; "
                             "use numerical_gradient_array with an upstream gradient")
        return float(value.reshape(()))

    return _centered(f, x, h, scalar)


def numerical_gradient_array(f: Callable, x, dout, h: float = 1e-5) -> np.ndarray:
    """The gradient of ``sum(f(x) * dout)`` by centered differences, float64, shape of ``x``.

    ``dout`` is the upstream gradient and must have the shape of ``f(x)``.
    """
    x, h = _check_args(f, x, h)
    check_float(dout, "dout")
    dout = np.asarray(dout, dtype=np.float64)
    shape = np.shape(f(x.copy()))
    if dout.shape != shape:
        raise ValueError(f"dout has shape {dout.shape}, but f(x) has shape {shape}")
    return _centered(f, x, h, lambda value: float(np.sum(np.asarray(value, dtype=np.float64) * dout)))


def relative_error(a, b, tiny: float = np.finfo(np.float64).tiny) -> float:
    """``max|a - b| / max(max(|a| + |b|), tiny)`` in float64, for two arrays of one shape.

    0 for equal arrays (also when both are zero), 1 when ``b = -a``, never above 1.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have one shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("a and b are empty")
    a, b = a.astype(np.float64), b.astype(np.float64)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("a and b must hold finite numbers")
    if not (np.isfinite(tiny) and tiny > 0):
        raise ValueError(f"tiny must be a finite number > 0, got {tiny}")
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a) + np.abs(b))), tiny))
