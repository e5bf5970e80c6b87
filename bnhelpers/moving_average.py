"""Exponential moving averages (EMA), the estimator behind BN's moving statistics.

One update with decay ``d`` (Keras calls it ``momentum``; Morvan Zhou's tutorial, which chapter 4 follows, used
``tf.train.ExponentialMovingAverage(decay=0.5)``)::

    average <- d * average + (1 - d) * value

Three numbers describe the trade-off a decay makes, each in units of training steps:

- :func:`warmup_steps`: how long the initial value (0 for a moving mean, 1 for a
  moving variance) keeps more than ``tol`` of its weight: ``d^k <= tol``.
- :func:`drift_lag`: how many steps behind a value that drifts linearly the
  average settles: ``d / (1 - d)``.
- :func:`noise_factor`: the standard deviation of the average of independent
  values with standard deviation ``s`` is ``s * sqrt((1 - d) / (1 + d))`` once
  warmed up.
All functions work in float64 on NumPy arrays; :func:`ema` takes a series along axis 0.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ema", "warmup_steps", "drift_lag", "noise_factor"]


def _check_decay(decay: float) -> float:
    if isinstance(decay, bool) or not isinstance(decay, (int, float, np.floating)):
        raise TypeError(f"decay must be a float, got {decay!r}")
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must be in [0, 1), got {decay}")
    return float(decay)


def ema(values, decay: float, init=0.0) -> np.ndarray:
    """The moving average after each of ``values`` (shape ``(steps, ...)``), starting from ``init``.

    Returns an array like ``values`` (float64): row ``k`` is the average after
    the update with ``values[k]``.
    """
    decay = _check_decay(decay)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim < 1 or len(values) == 0:
        raise ValueError(f"values must be a non-empty series (steps, ...), got shape {values.shape}")
    out = np.empty_like(values)
    average = np.broadcast_to(np.asarray(init, dtype=np.float64), values.shape[1:]).copy()
    for k, value in enumerate(values):
        average = decay * average + (1.0 - decay) * value
        out[k] = average
    return out


def warmup_steps(decay: float, tol: float = 0.01) -> int:
    """Smallest ``k`` with ``decay**k <= tol``: steps until the initial value weighs at most ``tol``."""
    decay = _check_decay(decay)
    if not 0.0 < tol < 1.0:
        raise ValueError(f"tol must be in (0, 1), got {tol}")
    if decay == 0.0:
        return 1
    k = math.ceil(math.log(tol) / math.log(decay))
    return k - 1 if decay ** (k - 1) <= tol else k  # guard against round-off in the logs


def drift_lag(decay: float) -> float:
    """Steady-state lag, in steps, behind a linearly drifting value: ``decay / (1 - decay)``."""
    decay = _check_decay(decay)
    return decay / (1.0 - decay)


def noise_factor(decay: float) -> float:
    """Standard deviation of the warmed-up average of i.i.d. values, per unit of their standard deviation."""
    decay = _check_decay(decay)
    return math.sqrt((1.0 - decay) / (1.0 + decay))
