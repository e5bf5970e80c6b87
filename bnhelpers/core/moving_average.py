"""Exponential moving averages (EMA): the estimator behind BN's moving statistics.

One update with ``momentum`` ``m`` (Keras's name and convention: the weight of the *old*
average; Morvan Zhou's tutorial, which chapter 4 follows, called it the ``decay`` of
``tf.train.ExponentialMovingAverage``; PyTorch's ``momentum`` is ``1 - m``, see
:func:`ema_update` and :mod:`bnhelpers.core.conventions`)::

    average <- m * average + (1 - m) * value

Four numbers describe the trade-off a momentum makes, each in training steps:

- :func:`initial_weight`: the share the initial value (0 for a moving mean, 1 for a
  moving variance) still holds after ``k`` updates, ``m**k``;
- :func:`steps_to_forget`: the fewest updates after which that share is at most
  ``remaining`` (about ``ln(1/remaining) / (1 - m)``: 459 for 0.99 and 1 %);
- :func:`drift_lag`: how many steps behind a linearly drifting value the average
  settles, ``m / (1 - m)``;
- :func:`noise_factor`: the standard deviation of the warmed-up average of independent
  values with standard deviation ``s`` is ``s * sqrt((1 - m) / (1 + m))``.

:func:`ema` runs the update over a series (axis 0 is the step). Everything is NumPy
float64.

Chapters: 2, 4, 6, 9, 11.
"""

from __future__ import annotations

import math

import numpy as np

from .validation import check_momentum

__all__ = ["CONVENTIONS", "ema", "ema_update", "initial_weight", "steps_to_forget", "drift_lag", "noise_factor"]

CONVENTIONS = ("keras", "torch")


def ema_update(average, value, momentum: float, convention: str = "keras"):
    """One update of a moving average, with ``momentum`` in Keras's or PyTorch's convention.

    ``"keras"``: ``momentum`` weighs the old average; ``"torch"``: it weighs the new value.
    Arrays broadcast; returns float64.
    """
    momentum = check_momentum(momentum)
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    keep = momentum if convention == "keras" else 1.0 - momentum
    return keep * np.asarray(average, dtype=np.float64) + (1.0 - keep) * np.asarray(value, dtype=np.float64)


def ema(values, momentum: float, init=0.0) -> np.ndarray:
    """The moving average after each of ``values`` (shape ``(steps, ...)``), starting from ``init``.

    Returns an array like ``values`` (float64): row ``k`` is the average after the
    :func:`ema_update` (Keras convention) with ``values[k]``.
    """
    momentum = check_momentum(momentum)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim < 1 or len(values) == 0:
        raise ValueError(f"values must be a non-empty series (steps, ...), got shape {values.shape}")
    out = np.empty_like(values)
    average = np.broadcast_to(np.asarray(init, dtype=np.float64), values.shape[1:]).copy()
    for k, value in enumerate(values):
        average = ema_update(average, value, momentum)
        out[k] = average
    return out


def initial_weight(momentum: float, steps: int) -> float:
    """Share of the initial value in the average after ``steps`` updates: ``momentum**steps``."""
    momentum = check_momentum(momentum)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    return momentum ** int(steps)


def steps_to_forget(momentum: float, remaining: float = 0.01) -> int:
    """Fewest updates after which the initial value's share is at most ``remaining``.

    The smallest ``k`` with ``momentum**k <= remaining``; 1 for momentum 0; ``ValueError``
    for momentum 1, which never forgets.
    """
    momentum = check_momentum(momentum)
    if not 0.0 < remaining < 1.0:
        raise ValueError(f"remaining must be in (0, 1), got {remaining}")
    if momentum == 0.0:
        return 1
    if momentum == 1.0:
        raise ValueError("with momentum 1 the average never changes, so it never forgets its initial value")
    steps = math.ceil(math.log(remaining) / math.log(momentum))
    while steps > 1 and momentum ** (steps - 1) <= remaining:  # round-off in the logarithms
        steps -= 1
    while momentum**steps > remaining:
        steps += 1
    return steps


def _below_one(momentum: float) -> float:
    momentum = check_momentum(momentum)
    if momentum == 1.0:
        raise ValueError("momentum must be below 1 here: with momentum 1 the average never moves")
    return momentum


def drift_lag(momentum: float) -> float:
    """Steady-state lag, in steps, behind a linearly drifting value: ``momentum / (1 - momentum)``."""
    momentum = _below_one(momentum)
    return momentum / (1.0 - momentum)


def noise_factor(momentum: float) -> float:
    """Standard deviation of the warmed-up average of i.i.d. values, per unit of their standard deviation."""
    momentum = check_momentum(momentum)
    return math.sqrt((1.0 - momentum) / (1.0 + momentum))
