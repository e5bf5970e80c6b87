"""Regression training for chapter 4's deep nets (Morvan Zhou's BN tutorial): mean squared error.

- :func:`fit_regression`: full-batch or mini-batch training, returning the per-step
  training-mode loss;
- :func:`refresh_statistics`: re-estimate BN's moving statistics from mini-batches
  without changing the weights, tracking the inference-mode loss.

Features and targets are ``(N, ...)`` float arrays, cast to ``keras.config.floatx()``.

Chapters: 4.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from .batches import shuffled_schedule
from .steps import gradient_step, make_optimizer

__all__ = ["fit_regression", "refresh_statistics"]


def fit_regression(model: keras.Model, x, y, *, steps: int, learning_rate: float,
                   optimizer: str = "adam", batch_size: int | None = None,
                   seed: int = 0) -> np.ndarray:
    """Train ``model`` on the mean squared error for ``steps`` steps; return the loss of each step.

    ``x``, ``y``: ``(N, ...)`` float arrays (cast to ``keras.config.floatx()``). ``batch_size=None`` uses the whole set
    every step (as in the tutorial); otherwise batches follow
    ``shuffled_schedule(..., carry_over=True)`` (epochs laid end to end) drawn from ``seed``. Each loss is the training-mode loss of the step's batch,
    computed before its update (what ``fit`` reports). Non-finite losses are kept.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    opt = make_optimizer(optimizer, learning_rate)
    x = np.asarray(x, keras.config.floatx())
    y = np.asarray(y, keras.config.floatx())
    if len(x) != len(y):
        raise ValueError(f"x and y disagree in length: {len(x)} vs {len(y)}")
    n = len(x)
    if batch_size is not None and not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be in [1, {n}], got {batch_size}")

    @tf.function
    def step(xb, yb):
        return gradient_step(model, opt, lambda target, out: tf.reduce_mean(tf.square(out - target)), xb, yb)

    if batch_size is None or batch_size == n:
        xs, ys = tf.constant(x), tf.constant(y)
        return np.array([float(step(xs, ys)) for _ in range(steps)])
    schedule = shuffled_schedule(n, batch_size, steps, seed, carry_over=True)
    return np.array([float(step(tf.constant(x[idx]), tf.constant(y[idx]))) for idx in schedule])


def refresh_statistics(model: keras.Model, x, y, *, batch_size: int, steps: int,
                       seed: int = 0) -> np.ndarray:
    """Update only the BN moving statistics and watch the inference-mode loss.

    Each step calls ``model`` in training mode on ``batch_size`` random rows of
    ``x`` (BN layers update their moving statistics; no gradient step, so the
    weights stay), then records the inference-mode mean squared error on all of
    ``(x, y)``. Returns that error after each step, shape ``(steps,)``.
    """
    x = np.asarray(x, keras.config.floatx())
    y = np.asarray(y, keras.config.floatx())
    if len(x) != len(y):
        raise ValueError(f"x and y disagree in length: {len(x)} vs {len(y)}")
    if not 1 <= batch_size <= len(x) or steps < 1:
        raise ValueError(f"need 1 <= batch_size <= {len(x)} and steps >= 1")
    xs, ys = tf.constant(x), tf.constant(y)

    @tf.function
    def step(xb):
        model(xb, training=True)
        return tf.reduce_mean(tf.square(model(xs, training=False) - ys))

    rng = np.random.default_rng(seed)
    return np.array([float(step(tf.constant(x[rng.choice(len(x), batch_size, replace=False)])))
                     for _ in range(steps)])
