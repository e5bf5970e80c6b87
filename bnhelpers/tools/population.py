"""Read, write and re-estimate the population statistics of a model's BN layers.

A *BN layer* is any layer with ``moving_mean`` and ``moving_variance`` weights
(:func:`bnhelpers.layers.walk.is_batch_norm`): ``keras.layers.BatchNormalization``
(with or without ``renorm``), ``MomentsBatchNorm`` and ``GhostBatchNormalization``.
Layers are found with :func:`bnhelpers.layers.walk.bn_layers`, so reading and writing
statistics works for nested models and for layers that hold BN layers too.

Statistics are returned as ``{layer.path: BNStatistics(mean, variance)}``: one
float64 array of shape ``(C,)`` each, ``C`` being the size of the layer's
``axis``; the *variance is biased* (divides by the number of values), which is
what Keras 3 stores. ``layer.path`` is unique within a model, even when nested
models reuse layer names.

Two uses of :func:`estimate_bn_statistics`, which leaves the model untouched:

- **PreciseBN** (Wu & Johnson 2021): after training, replace the exponential
  moving averages by the statistics of the training data under the final
  weights (:func:`precise_bn`). The old statistics are not used, so this also
  repairs moving statistics that went NaN.
- **AdaBN** (Li et al. 2018): replace them by the statistics of unlabelled
  data from a new domain (:func:`adabn`).

:func:`predict_with_batch_statistics` predicts in training mode (every batch
normalized with its own statistics) and then restores the moving statistics
that such calls overwrite.

:func:`precise_bn`, :func:`adabn` and :func:`set_bn_statistics` modify the
model **in place**; they return the statistics they replaced, so
``set_bn_statistics(model, old)`` undoes them.

``upstream`` decides what feeds each BN layer while its statistics are measured:

- ``"inference"`` (default): the model runs in inference mode and the layers are
  re-estimated one after another, in the order the forward pass calls them, each
  with the already re-estimated statistics of the layers before it. The result is
  exactly the mean and variance of each layer's input in the recalibrated
  inference network, and does not depend on ``batch_size``. It costs one pass
  over the data per BN layer, each as far as that layer's input.
- ``"train"``: one pass in training mode, so every BN layer normalizes with the
  statistics of the current batch, as during training (this is how common
  PreciseBN implementations collect statistics). The result depends on
  ``batch_size``; dropout and other training-mode layers are active.

Each BN layer's input is read from :func:`bnhelpers.layers.walk.layer_inputs_model`:
a functional model over the same layer objects whose outputs are those inputs (built
with the public ``keras.models.clone_model(..., call_function=...)``; no method is
replaced and no weight changes). It runs eagerly and computes the inputs exactly as a
call of the model does (in training mode it also runs the rest of the model, so that
random layers draw as ``model(x, training=True)`` would). So :func:`estimate_bn_statistics` (and PreciseBN, AdaBN) needs
a functional or Sequential model; nested functional and Sequential models are fine
(``build_mlp(norm_factory=noisy_batch_norm(...))`` nests a Sequential per BN). A BN
layer inside a subclassed model or inside a custom layer's ``call`` (e.g.
``InferenceMode(block)``), a BN layer called more than once, and masked inputs raise
``ValueError`` naming the layer.

Chapter 5 uses AdaBN, batch statistics at test time and PreciseBN; chapter 6 PreciseBN;
chapter 7 PreciseBN and AdaBN against the papers; chapter 9 refers to :func:`precise_bn`.

Chapters: 5, 6, 7, 10, 11.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

import keras
import numpy as np

from ..layers.walk import bn_layers, bn_axis, layer_inputs_model

__all__ = [
    "BNStatistics",
    "get_bn_statistics",
    "set_bn_statistics",
    "estimate_bn_statistics",
    "precise_bn",
    "adabn",
    "predict_with_batch_statistics",
]

UPSTREAM_MODES = ("inference", "train")


class BNStatistics(NamedTuple):
    """Population statistics of one BN layer: ``mean`` and biased ``variance``, shape ``(C,)``."""

    mean: np.ndarray
    variance: np.ndarray


def get_bn_statistics(model) -> dict[str, BNStatistics]:
    """The current moving statistics of every BN layer, as float64 copies."""
    return {layer.path: BNStatistics(np.array(layer.moving_mean.numpy(), dtype=np.float64),
                                     np.array(layer.moving_variance.numpy(), dtype=np.float64))
            for layer in bn_layers(model)}


def set_bn_statistics(model, statistics: dict) -> None:
    """Write ``{layer.path: (mean, variance)}`` into the model's BN layers, in place.

    Every BN layer of the model must be present, with arrays of its shape and a
    non-negative variance. Layers with ``renorm=True`` also get their
    ``moving_stddev`` set to ``sqrt(variance + epsilon)``, which Keras keeps in step.
    """
    layers = {layer.path: layer for layer in bn_layers(model)}
    missing, unknown = set(layers) - set(statistics), set(statistics) - set(layers)
    if missing or unknown:
        raise ValueError(f"statistics do not match the model's BN layers: missing {sorted(missing)}, "
                         f"unknown {sorted(unknown)}")
    checked = {}
    for path, layer in layers.items():
        mean, variance = (np.asarray(v, dtype=np.float64) for v in statistics[path])
        shape = tuple(layer.moving_mean.shape)
        if mean.shape != shape or variance.shape != shape:
            raise ValueError(f"{path}: expected mean and variance of shape {shape}, "
                             f"got {mean.shape} and {variance.shape}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(variance))) or np.any(variance < 0):
            raise ValueError(f"{path}: statistics must be finite and the variance non-negative")
        checked[path] = (mean, variance)
    for path, (mean, variance) in checked.items():
        _assign(layers[path], mean, variance)


def _assign(layer, mean: np.ndarray, variance: np.ndarray) -> None:
    layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
    layer.moving_variance.assign(variance.astype(layer.moving_variance.dtype))
    if getattr(layer, "renorm", False) and getattr(layer, "moving_stddev", None) is not None:
        layer.moving_stddev.assign(np.sqrt(variance + layer.epsilon).astype(layer.moving_stddev.dtype))


class _Accumulator:
    """Count, mean and sum of squared deviations per channel, merged batch by batch (Chan et al.)."""

    def __init__(self):
        self.count, self.mean, self.m2 = 0, None, None

    def add(self, x: np.ndarray, axis: int) -> None:
        values = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
        values = values.reshape(-1, values.shape[-1])
        n = values.shape[0]
        if n == 0:
            return
        mean = values.mean(axis=0)
        m2 = ((values - mean) ** 2).sum(axis=0)
        if self.count == 0:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    def result(self) -> BNStatistics:
        return BNStatistics(self.mean, self.m2 / self.count)


def _batches(data, batch_size: int) -> Iterable:
    """Yield model inputs: slices of an array/tensor, or the elements of a ``tf.data.Dataset``
    (for a tuple element ``(x, y[, w])`` only ``x``)."""
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):
        for element in data:
            yield element[0] if isinstance(element, tuple) else element
        return
    if isinstance(data, (np.ndarray, tf.Tensor)):
        if data.shape[0] == 0:
            raise ValueError("data is empty")
        for start in range(0, int(data.shape[0]), batch_size):
            yield data[start:start + batch_size]
        return
    raise TypeError(f"data must be a NumPy array, a tensor or a tf.data.Dataset, got {type(data).__name__}")


def _state(layers) -> list:
    return [(v, v.numpy().copy()) for layer in layers for v in layer.non_trainable_variables]


def estimate_bn_statistics(model, data, *, batch_size: int = 256,
                           upstream: str = "inference") -> dict[str, BNStatistics]:
    """Mean and biased variance of every BN layer's input over ``data``; the model is left unchanged.

    ``data``: inputs only, as a NumPy array or tensor ``(N, ...)`` cut into
    batches of ``batch_size``, or a ``tf.data.Dataset`` of batches (``(x, y)``
    elements are accepted; ``y`` is ignored). A dataset is iterated once per BN
    layer with ``upstream="inference"``, so it must be re-iterable and
    deterministic. See the module docstring for ``upstream``. Returns
    ``{layer.path: BNStatistics}`` for :func:`set_bn_statistics`.
    """
    if upstream not in UPSTREAM_MODES:
        raise ValueError(f"upstream must be one of {UPSTREAM_MODES}, got {upstream!r}")
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    layers = bn_layers(model)
    # train: the model's outputs too, so that every layer runs as in model(x, training=True)
    tap, order = layer_inputs_model(model, layers, with_outputs=upstream == "train")
    saved_state = _state(layers)
    accumulators = {layer.path: _Accumulator() for layer in layers}

    def add(layer, x):
        x = np.asarray(x)
        accumulators[layer.path].add(x, bn_axis(layer, x.ndim))

    try:
        if upstream == "train":
            for batch in _batches(data, batch_size):
                for layer, x in zip(order, tap(batch, training=True)):  # zip stops before the outputs
                    add(layer, x)
        else:
            for k, layer in enumerate(order):
                input_of = keras.Model(tap.input, tap.outputs[k], name=f"{tap.name}_{k}")
                for batch in _batches(data, batch_size):
                    add(layer, input_of(batch, training=False))
                if accumulators[layer.path].count == 0:
                    break   # an empty dataset: reported below
                _assign(layer, *accumulators[layer.path].result())   # later layers may still hold NaN
        empty = sorted(path for path, acc in accumulators.items() if acc.count == 0)
        if empty:
            raise ValueError(f"these BN layers saw no data: {empty}")
        result = {path: acc.result() for path, acc in accumulators.items()}
    finally:
        for variable, value in saved_state:
            variable.assign(value)
    return result


def precise_bn(model, data, *, batch_size: int = 256, upstream: str = "inference") -> dict[str, BNStatistics]:
    """PreciseBN, **in place**: set every BN layer's statistics to those of ``data`` (the training
    inputs) under the current weights. Returns the replaced statistics."""
    old = get_bn_statistics(model)
    set_bn_statistics(model, estimate_bn_statistics(model, data, batch_size=batch_size, upstream=upstream))
    return old


def adabn(model, target_data, *, batch_size: int = 256, upstream: str = "inference") -> dict[str, BNStatistics]:
    """AdaBN, **in place**: set every BN layer's statistics to those of unlabelled inputs from the
    target domain. Returns the replaced statistics."""
    return precise_bn(model, target_data, batch_size=batch_size, upstream=upstream)


def predict_with_batch_statistics(model, x, *, batch_size: int = 32) -> np.ndarray:
    """``model(batch, training=True)`` for consecutive batches of ``x``, concatenated; the model is left unchanged.

    Every BN layer normalizes each batch with that batch's own statistics (so a
    prediction depends on the other examples in its batch, and on ``batch_size``).
    The whole model runs in training mode (dropout included); the moving
    statistics that the calls update are restored afterwards.
    """
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    import tensorflow as tf

    saved_state = _state(bn_layers(model))
    forward = tf.function(lambda batch: model(batch, training=True), reduce_retracing=True)
    try:
        outputs = [np.asarray(forward(batch)) for batch in _batches(x, batch_size)]
    finally:
        for variable, value in saved_state:
            variable.assign(value)
    return np.concatenate(outputs)
