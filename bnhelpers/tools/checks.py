"""Checks that catch BN bugs in training code: statistics that never move, and which variables a step changes.

- :func:`expect_bn_update`: a context manager around one training step; it raises
  :class:`BNStatisticsNotUpdated` (an ``AssertionError``) when a BN layer's
  moving mean and moving variance are both unchanged afterwards, which is what
  happens when a custom loop calls ``model(x)`` instead of ``model(x, training=True)``.
- :func:`snapshot` and :func:`changed`: copy every variable of a layer or model
  (keyed by ``variable.path``), then tell which ones differ later.
- :class:`TrainingFlagProbe`: an identity layer that records the ``training``
  flag Keras passes to it (use ``run_eagerly=True`` to record every call).

Chapters: 5.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np

from ..layers.walk import bn_layers

__all__ = ["BNStatisticsNotUpdated", "expect_bn_update", "snapshot", "changed",
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
