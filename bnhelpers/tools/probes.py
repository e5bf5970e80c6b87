"""Probes: what a built model does on a set of examples, measured without changing it.

- :func:`accuracy`: share of correct predictions, in inference mode or (without
  touching the moving statistics) with the batch's own statistics;
- :func:`pre_activations`: every hidden layer's pre-activation for a data set;
  :func:`dead_relu_fraction`, :func:`saturated_tanh_fraction` and :func:`per_layer`
  read them (chapter 4);
- :class:`LayerInputPercentiles` and :func:`percentile_drift`: how the distribution
  entering a layer moves during training (chapter 7, Ioffe & Szegedy's Fig. 1 and
  Santurkar et al.'s "internal covariate shift" measurements).

Conventions: a *pre-activation* is the input of a hidden layer's activation
(after BN when BN sits before the nonlinearity), an array ``(N, units)`` over a
set of ``N`` examples. A ReLU unit is *dead* on that set when its
pre-activation is ``<= 0`` for every example (its output and its gradient are 0
everywhere). A tanh unit is *saturated* when ``|tanh(z)| >= level`` on at least
``min_share`` of the examples (there its derivative ``1 - tanh(z)^2`` is below
``1 - level^2``). Inputs are cast to ``keras.config.floatx()``.

Chapters: 4, 6, 7, 8, 10, 11.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

__all__ = [
    "logits_accuracy",
    "accuracy",
    "pre_activations",
    "dead_relu_fraction",
    "saturated_tanh_fraction",
    "per_layer",
    "LayerInputPercentiles",
    "percentile_drift",
]


def logits_accuracy(logits, y) -> float:
    """Fraction of ``argmax(logits) == y``: ``logits`` ``(N, classes)`` from any model (Keras, a reloaded
    SavedModel, a TensorFlow Lite interpreter), ``y`` ``(N,)`` integer labels."""
    logits, y = np.asarray(logits), np.asarray(y)
    if logits.ndim != 2 or y.shape != logits.shape[:1]:
        raise ValueError(f"logits must be (N, classes) and y (N,), got {logits.shape} and {y.shape}")
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def accuracy(model, x, y, *, training: bool = False) -> float:
    """Fraction of ``argmax(model(x)) == y``.

    ``training=True`` normalizes ``x`` with its own batch statistics, through
    ``stateless_call``: the moving statistics are not updated.
    """
    x = tf.constant(np.asarray(x, dtype=keras.config.floatx()))
    if training:
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        logits, _ = model.stateless_call(trainable, non_trainable, x, training=True)
    else:
        logits = model(x, training=False)
    return logits_accuracy(logits, y)


def pre_activations(model: keras.Model, x, *, training: bool = False) -> list[np.ndarray]:
    """The input of every hidden ``Activation`` layer for the examples ``x``, in order.

    Works for models from :func:`~bnhelpers.models.mlp.build_mlp` (and anything with
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


class LayerInputPercentiles:
    """``probe(model) -> (len(q), units)``: percentiles over ``x`` of the input to layer ``layer_name``.

    ``training=True`` runs the network in training mode (BN uses the statistics
    of ``x`` as one batch) through ``stateless_call``, so the moving statistics
    are not touched; ``training=False`` uses the moving statistics.
    """

    def __init__(self, model, layer_name: str, x, q: Sequence[float] = (15, 50, 85), training: bool = True):
        q = np.asarray(q, dtype=np.float64)
        if q.ndim != 1 or np.any((q < 0) | (q > 100)):
            raise ValueError(f"q must be percentiles in [0, 100], got {q}")
        self.model, self.q, self.training = model, q, bool(training)
        self._sub = keras.Model(model.input, model.get_layer(layer_name).input)
        self._x = tf.constant(np.asarray(x, dtype=keras.config.floatx()))
        sub = self._sub

        @tf.function
        def values():
            trainable = [v.value for v in sub.trainable_variables]
            non_trainable = [v.value for v in sub.non_trainable_variables]
            out, _ = sub.stateless_call(trainable, non_trainable, self._x, training=self.training)
            return out

        self._values = values

    def values(self) -> np.ndarray:
        """The layer input for every example of ``x``: ``(N, units)``."""
        return self._values().numpy()

    def __call__(self, model=None) -> np.ndarray:
        if model is not None and model is not self.model:
            raise ValueError("this probe was built for another model")
        return np.percentile(self.values(), self.q, axis=0)


def percentile_drift(trace) -> dict:
    """How much a distribution moves over training, from a trace of 3 percentiles (low, median, high).

    ``trace``: ``(T, 3, units)``, e.g. stacked :class:`LayerInputPercentiles`
    results. Returns per unit (arrays of shape ``(units,)``):
    ``median_travel``, the largest distance of the median from its first value
    divided by the mean low-to-high spread over time; and ``spread_ratio``, the
    largest spread over the smallest.
    """
    trace = np.asarray(trace, dtype=np.float64)
    if trace.ndim != 3 or trace.shape[1] != 3 or trace.shape[0] < 2:
        raise ValueError(f"trace must have shape (T >= 2, 3, units), got {trace.shape}")
    spread = trace[:, 2] - trace[:, 0]
    if np.any(spread < 0):
        raise ValueError("percentiles must be ordered low, median, high")
    tiny = np.finfo(np.float64).tiny
    travel = np.abs(trace[:, 1] - trace[0, 1]).max(axis=0) / np.maximum(spread.mean(axis=0), tiny)
    return {"median_travel": travel, "spread_ratio": spread.max(axis=0) / np.maximum(spread.min(axis=0), tiny)}
