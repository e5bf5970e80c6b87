"""Per-layer diagnostics for deep MLPs, and the deep regression net of Morvan Zhou's BN tutorial (chapter 4).

Conventions: a *pre-activation* is the input of a hidden layer's activation
(after BN when BN sits before the nonlinearity), an array ``(N, units)`` over a
set of ``N`` examples. A ReLU unit is *dead* on that set when its
pre-activation is ``<= 0`` for every example (its output and its gradient are 0
everywhere). A tanh unit is *saturated* when ``|tanh(z)| >= level`` on at least
``min_share`` of the examples (there its derivative ``1 - tanh(z)^2`` is below
``1 - level^2``).

- :func:`build_deep_regressor`: ``1 -> 7 x 30 -> 1`` with N(0, 1) kernels as in
  that tutorial, optionally with :class:`~bnhelpers.layers.MomentsBatchNorm` before
  every activation.
- :func:`fit_regression`: full-batch or mini-batch training on mean squared
  error, returning the per-step training-mode loss.
- :func:`refresh_statistics`: re-estimate BN's moving statistics from
  mini-batches without changing the weights, tracking the inference-mode loss.
- :func:`pre_activations`: every hidden layer's pre-activation for a data set.
- :func:`dead_relu_fraction`, :func:`saturated_tanh_fraction`: per-layer fractions.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from .layers import MomentsBatchNorm
from .models import build_mlp

__all__ = [
    "build_deep_regressor",
    "fit_regression",
    "refresh_statistics",
    "pre_activations",
    "dead_relu_fraction",
    "saturated_tanh_fraction",
    "per_layer",
]

ACTIVATIONS = ("relu", "tanh")


def build_deep_regressor(activation: str = "relu", *, bn: bool = False, depth: int = 7,
                         width: int = 30, init_std: float = 1.0, momentum: float = 0.5,
                         seed: int = 0) -> keras.Model:
    """Zhou's tutorial's net: ``depth`` hidden layers of ``width`` units, input and output of size 1.

    Kernels are N(0, ``init_std``^2) and identical with and without BN for the same
    ``seed``. With ``bn=True`` every hidden layer is ``Dense(no bias) ->
    MomentsBatchNorm(momentum) -> activation``; ``momentum`` is the EMA decay
    of the moving statistics (the tutorial used 0.5).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if depth < 1 or width < 1:
        raise ValueError(f"depth and width must be >= 1, got {depth} and {width}")
    if init_std <= 0:
        raise ValueError(f"init_std must be > 0, got {init_std}")
    return build_mlp(1, 1, (width,) * depth, bn="pre" if bn else None, activation=activation,
                     seed=seed, init_std=init_std,
                     norm_factory=lambda: MomentsBatchNorm(momentum=momentum),
                     name=f"deep_{activation}_{'bn' if bn else 'nobn'}")


def fit_regression(model: keras.Model, x, y, *, steps: int, learning_rate: float,
                   optimizer: str = "adam", batch_size: int | None = None,
                   seed: int = 0) -> np.ndarray:
    """Train ``model`` on the mean squared error for ``steps`` steps; return the loss of each step.

    ``x``, ``y``: ``(N, ...)`` float arrays (cast to ``keras.config.floatx()``). ``batch_size=None`` uses the whole set
    every step (as in the tutorial); otherwise batches follow a permutation per pass drawn
    from ``seed``. Each loss is the training-mode loss of the step's batch,
    computed before its update (what ``fit`` reports). Non-finite losses are kept.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if learning_rate <= 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    optimizers = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam}
    if optimizer not in optimizers:
        raise ValueError(f"optimizer must be one of {sorted(optimizers)}, got {optimizer!r}")
    x = np.asarray(x, keras.config.floatx())
    y = np.asarray(y, keras.config.floatx())
    if len(x) != len(y):
        raise ValueError(f"x and y disagree in length: {len(x)} vs {len(y)}")
    n = len(x)
    if batch_size is not None and not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be in [1, {n}], got {batch_size}")
    opt = optimizers[optimizer](learning_rate=learning_rate)
    variables = model.trainable_variables

    @tf.function
    def step(xb, yb):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(xb, training=True) - yb))
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    if batch_size is None or batch_size == n:
        xs, ys = tf.constant(x), tf.constant(y)
        return np.array([float(step(xs, ys)) for _ in range(steps)])
    rng = np.random.default_rng(seed)
    order, losses = np.empty(0, dtype=int), []
    for _ in range(steps):
        if len(order) < batch_size:
            order = np.concatenate([order, rng.permutation(n)])
        idx, order = order[:batch_size], order[batch_size:]
        losses.append(float(step(tf.constant(x[idx]), tf.constant(y[idx]))))
    return np.array(losses)


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


def pre_activations(model: keras.Model, x, *, training: bool = False) -> list[np.ndarray]:
    """The input of every hidden ``Activation`` layer for the examples ``x``, in order.

    Works for models from :func:`~bnhelpers.models.build_mlp` (and anything with
    ``keras.layers.Activation`` layers). ``training`` selects batch statistics
    (``True``, ``x`` is one batch) or moving statistics in BN layers.
    """
    tensors = [layer.input for layer in model.layers if isinstance(layer, keras.layers.Activation)]
    if not tensors:
        raise ValueError(f"model {model.name!r} has no Activation layers")
    probe = keras.Model(model.input, tensors)
    outputs = probe(np.asarray(x, keras.config.floatx()), training=training)
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [np.asarray(z) for z in outputs]


def _check_2d(z, name="z") -> np.ndarray:
    z = np.asarray(z)
    if z.ndim != 2 or z.shape[0] < 1:
        raise ValueError(f"{name} must have shape (examples, units), got {z.shape}")
    return z


def dead_relu_fraction(z) -> float:
    """Share of units (columns of ``z``, shape ``(N, units)``) with ``z <= 0`` on every example."""
    z = _check_2d(z)
    return float(np.all(z <= 0, axis=0).mean())


def saturated_tanh_fraction(z, level: float = 0.99, min_share: float = 0.9) -> float:
    """Share of units whose ``|tanh(z)| >= level`` on at least ``min_share`` of the examples."""
    z = _check_2d(z)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if not 0 < min_share <= 1:
        raise ValueError(f"min_share must be in (0, 1], got {min_share}")
    saturated = np.abs(np.tanh(z.astype(np.float64))) >= level
    return float((saturated.mean(axis=0) >= min_share).mean())


def per_layer(fraction, zs: Sequence[np.ndarray], **kwargs) -> np.ndarray:
    """Apply a fraction function to each layer's pre-activations; return an array, one per layer."""
    return np.array([fraction(z, **kwargs) for z in zs])
