"""Checks that catch BN bugs in training code: statistics that never move, and which variables a step changes.

- :func:`expect_bn_update`: a context manager around one training step; it raises
  :class:`BNStatisticsNotUpdated` (an ``AssertionError``) when a BN layer's
  moving mean and moving variance are both unchanged afterwards, which is what
  happens when a custom loop calls ``model(x)`` instead of ``model(x, training=True)``.
- :func:`snapshot` and :func:`changed`: copy every variable of a layer or model
  (keyed by ``variable.path``), then tell which ones differ later.
- :func:`sgd_step`: one plain gradient step on a model or layer, with the
  ``training`` flag made explicit; used to map out what ``trainable`` and
  ``training`` do.
- :class:`TrainingFlagProbe`: an identity layer that records the ``training``
  flag Keras passes to it (use ``run_eagerly=True`` to record every call).
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import tensorflow as tf

from .statistics import bn_layers

__all__ = ["BNStatisticsNotUpdated", "expect_bn_update", "snapshot", "changed", "sgd_step",
           "TrainingFlagProbe"]


class BNStatisticsNotUpdated(AssertionError):
    """A training step left the moving statistics of some BN layers unchanged."""


def snapshot(obj) -> dict[str, np.ndarray]:
    """Copies of every variable (trainable or not) of a Keras layer or model, keyed by ``variable.path``."""
    variables = getattr(obj, "variables", None)
    if variables is None:
        raise TypeError(f"expected a Keras layer or model, got {type(obj).__name__}")
    return {v.path: np.array(v.numpy()) for v in variables}


def changed(before: dict, after: dict, atol: float = 0.0) -> dict[str, bool]:
    """``{path: True if the variable moved by more than atol anywhere}`` for two :func:`snapshot` results."""
    if before.keys() != after.keys():
        raise ValueError("the snapshots hold different variables")
    if atol < 0:
        raise ValueError(f"atol must be >= 0, got {atol}")
    return {k: bool(np.any(np.abs(after[k] - before[k]) > atol)) for k in before}


@contextlib.contextmanager
def expect_bn_update(model, atol: float = 0.0):
    """Raise :class:`BNStatisticsNotUpdated` if the enclosed code leaves the moving mean *and* the
    moving variance of any BN layer of ``model`` unchanged (by more than ``atol``).

    Layers with ``trainable=False`` are skipped: Keras 3 runs them in inference mode on purpose.
    """
    layers = [layer for layer in bn_layers(model) if layer.trainable]
    if not layers:
        raise ValueError("every BN layer is frozen (trainable=False); nothing is expected to update")
    before = {layer.path: (layer.moving_mean.numpy().copy(), layer.moving_variance.numpy().copy())
              for layer in layers}
    yield
    stuck = []
    for layer in layers:
        mean, variance = before[layer.path]
        moved = (np.any(np.abs(layer.moving_mean.numpy() - mean) > atol)
                 or np.any(np.abs(layer.moving_variance.numpy() - variance) > atol))
        if not moved:
            stuck.append(layer.path)
    if stuck:
        raise BNStatisticsNotUpdated(
            f"the moving statistics of {len(stuck)} of {len(layers)} BN layers did not change: "
            f"{', '.join(stuck)}. Is the model called with training=True in the training step?")


def sgd_step(model, x, y=None, *, training: bool, learning_rate: float = 0.1, loss_fn=None) -> float:
    """One gradient-descent step on ``model.trainable_variables``; returns the loss.

    ``loss_fn(y, output)`` defaults to the mean squared output when ``y`` is None
    and to mean squared error otherwise. The model is called as
    ``model(x, training=training)``, so the flag is always explicit.
    """
    if not isinstance(training, bool):
        raise TypeError(f"training must be True or False, got {training!r}")
    if learning_rate <= 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    if loss_fn is None:
        loss_fn = (lambda _, out: tf.reduce_mean(out**2)) if y is None else \
            (lambda target, out: tf.reduce_mean((out - target) ** 2))
    with tf.GradientTape() as tape:
        out = model(x, training=training)
        loss = loss_fn(y, out)
    variables = model.trainable_variables
    if variables:
        for variable, grad in zip(variables, tape.gradient(loss, variables)):
            if grad is not None:
                variable.assign_sub(learning_rate * tf.cast(grad, variable.dtype))
    return float(loss)


@keras.saving.register_keras_serializable(package="bnhelpers")
class TrainingFlagProbe(keras.layers.Layer):
    """Identity layer; appends the ``training`` value of each call to ``self.flags``.

    Inside a compiled function it records once per trace, so compile the model
    with ``run_eagerly=True`` to see every call.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.flags: list = []

    def call(self, inputs, training=None):
        self.flags.append(training)
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape
