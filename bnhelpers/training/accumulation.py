"""Gradient accumulation with BN: the gradient of k micro-batches, the moving statistics updated once.

Gradient accumulation runs the ``k`` *micro-batches* of one optimizer step through the
model one after another, adds up their gradients and lets the optimizer take one step:
the memory of a micro-batch, the gradient of the whole batch. For a network without BN
(or with LayerNorm) that gradient is the large batch's, up to round-off. BN breaks the
equivalence twice (chapter 11):

- each micro-batch is normalized with its own statistics, so the outputs and the gradient
  are those of ghost BN whose virtual batch is the micro-batch
  (:class:`bnhelpers.layers.ghost.GhostBatchNormalization`), not those of the large batch;
- a plain loop calls the model in training mode ``k`` times per optimizer step, so every
  BN layer updates its moving averages ``k`` times, with micro-batch statistics: momentum
  ``m`` acts as ``m**k`` per optimizer step, and the variances it averages are those of
  micro-batches (too small by the factor ``(n-1)/n`` for ``n`` examples, in expectation).

The first is what accumulation *is* (the large batch's statistics need all its examples
at once); the second is repaired here. Conventions:

- ``micro_batches``: a non-empty sequence of ``(x, y)`` pairs, ``x`` of shape
  ``(n_i, ...)`` and ``y`` with ``n_i`` rows; :func:`split_batch` cuts a batch into them.
- ``loss_fn(y, output)`` returns the *mean* loss over a micro-batch (Keras losses do).
  Each micro-batch's loss is weighted by its share ``n_i / N`` of the ``N`` examples, so
  the accumulated gradient is the gradient of the mean loss over all of them (the sum of
  the ``k`` gradients divided by ``k`` for equal micro-batches).
- The forward pass and the gradients are the same for every ``statistics``; it decides
  only how the moving averages (``moving_mean``, ``moving_variance``) of each BN layer
  that updates in training mode (a *trainable* one) move:

  - ``"pooled"`` (default): once per optimizer step, with the mean and biased variance
    of the layer's inputs over all ``N`` examples together (the variance includes the
    spread of the micro-batch means): what the layer would have used had it been called
    once on the concatenated inputs;
  - ``"mean"``: once, with the size-weighted averages of the micro-batch means and of the
    micro-batch variances: what ``GhostBatchNormalization`` does on the concatenated
    batch with ``virtual_batch_size`` the micro-batch size;
  - ``"naive"``: once per micro-batch, as a plain loop and Keras's
    ``gradient_accumulation_steps`` do.

  The update is Keras's, ``m * average + (1 - m) * value`` with the layer's ``momentum``
  (:func:`bnhelpers.core.moving_average.ema_update`). Statistics are computed in float64
  over every axis but the layer's ``axis``.
- ``"pooled"`` and ``"mean"`` read each BN layer's input with
  :func:`bnhelpers.layers.walk.layer_inputs_model`, so they need a functional or
  Sequential model (``ValueError`` naming the layer otherwise). BN layers with
  ``renorm=True`` are refused.

API: :class:`GradientAccumulator` (traced once, for loops: ``gradients``, ``step``,
``run`` over a schedule), :func:`accumulate_gradients` and :func:`accumulation_step`
(one-off calls), :func:`split_batch`. The loss comes back as a Python float (computed in
float64); gradients are tensors, one per ``model.trainable_variables`` (``None`` where the
loss does not depend on the variable).

Keras losses compute in the ``keras.config.floatx()`` of their creation: make ``loss_fn``
after ``set_floatx("float64")`` (or pass ``dtype``) when the model is float64.

Chapters: 11.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from ..core.moving_average import ema_update
from ..core.validation import check_positive_int
from ..layers.walk import bn_axis, is_batch_norm, layer_inputs_model, walk_layers
from ..tools.population import BNStatistics

__all__ = ["STATISTICS", "AccumulatedGradients", "GradientAccumulator", "accumulate_gradients",
           "accumulation_step", "split_batch"]

STATISTICS = ("pooled", "mean", "naive")


class AccumulatedGradients(NamedTuple):
    """What :meth:`GradientAccumulator.gradients` returns.

    ``loss``: the mean loss over all examples (float); ``gradients``: its gradient, one
    tensor (or ``None``) per ``model.trainable_variables``; ``statistics``:
    ``{layer.path: BNStatistics(mean, variance)}``, the values each BN layer's moving
    averages were updated with once (empty for ``"naive"``, which updates them per
    micro-batch).
    """

    loss: float
    gradients: list
    statistics: dict


def split_batch(x, y, micro_batches: int) -> list:
    """Cut ``(x, y)`` into ``micro_batches`` consecutive ``(x_i, y_i)`` pairs of (nearly) equal size
    (``numpy.array_split``: the first ``len(x) % micro_batches`` get one example more)."""
    check_positive_int(micro_batches=micro_batches)
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y disagree in length: {len(x)} vs {len(y)}")
    if micro_batches > len(x):
        raise ValueError(f"cannot cut {len(x)} examples into {micro_batches} non-empty micro-batches")
    return list(zip(np.array_split(x, micro_batches), np.array_split(y, micro_batches)))


def _updating_bn_layers(model) -> list:
    """The BN layers whose moving averages a training-mode call updates (trainable ones)."""
    layers = [layer for layer in walk_layers(model) if is_batch_norm(layer) and layer.trainable]
    for layer in layers:
        if getattr(layer, "renorm", False):
            raise ValueError(f"{layer.name}: BN with renorm=True is not supported (its moving statistics "
                             "also feed the renorm corrections)")
    return layers


class GradientAccumulator:
    """Accumulated gradients of ``loss_fn`` over micro-batches, with BN's moving statistics handled
    by ``statistics`` (see the module docstring). The per-micro-batch work is traced once, so one
    accumulator serves a whole training run."""

    def __init__(self, model, loss_fn, *, statistics: str = "pooled"):
        if not isinstance(model, keras.Model):
            raise TypeError(f"model must be a Keras model, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable, got {loss_fn!r}")
        if statistics not in STATISTICS:
            raise ValueError(f"statistics must be one of {STATISTICS}, got {statistics!r}")
        self.model, self.loss_fn, self.statistics = model, loss_fn, statistics
        layers = _updating_bn_layers(model)
        if statistics == "naive" or not layers:
            self._layers, self._forward = [], lambda x: [model(x, training=True)]
        else:
            tap, self._layers = layer_inputs_model(model, layers, with_outputs=True)
            self._forward = lambda x: keras.tree.flatten(tap(x, training=True))
        self._micro = tf.function(self._micro_step, reduce_retracing=True)

    def _micro_step(self, x, y, weight):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            flat = self._forward(x)
            inputs, outputs = flat[:len(self._layers)], flat[len(self._layers):]
            output = outputs[0] if len(outputs) == 1 else outputs
            loss = tf.cast(self.loss_fn(y, output), tf.float64)
            weighted = loss * weight
        gradients = tape.gradient(weighted, variables)
        moments = []
        for layer, z in zip(self._layers, inputs):
            z = tf.cast(z, tf.float64)
            axis = bn_axis(layer, len(z.shape))
            axes = [i for i in range(len(z.shape)) if i != axis]
            mean = tf.reduce_mean(z, axis=axes, keepdims=True)
            variance = tf.reduce_mean(tf.square(z - mean), axis=axes)
            count = tf.cast(tf.size(z) // tf.shape(z)[axis], tf.float64)
            moments.append((count, tf.reshape(mean, [-1]), variance))
        return weighted, gradients, moments

    def _checked(self, micro_batches) -> list:
        if isinstance(micro_batches, (np.ndarray, tf.Tensor)):
            raise ValueError("micro_batches must be a sequence of (x, y) pairs, not one array "
                             "(cut a batch with split_batch(x, y, k))")
        micro_batches = list(micro_batches)
        if not micro_batches:
            raise ValueError("micro_batches must be a non-empty sequence of (x, y) pairs")
        dtype = self.model.compute_dtype
        checked = []
        for i, pair in enumerate(micro_batches):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(f"micro-batch {i} must be an (x, y) pair")
            x, y = (np.asarray(v) if not isinstance(v, tf.Tensor) else v for v in pair)
            n, n_y = (int(v.shape[0]) if len(v.shape) else 0 for v in (x, y))
            if n < 1:
                raise ValueError(f"micro-batch {i} is empty")
            if n_y != n:
                raise ValueError(f"micro-batch {i}: x has {n} examples but y has {n_y}")
            x = tf.convert_to_tensor(x)
            if x.dtype.is_floating:
                x = tf.cast(x, dtype)
            checked.append((x, tf.convert_to_tensor(y), n))
        return checked

    def gradients(self, micro_batches) -> AccumulatedGradients:
        """Accumulate over ``micro_batches`` and update the moving statistics; the trainable weights
        are left alone (see :meth:`step`)."""
        batches = self._checked(micro_batches)
        total = sum(n for _, _, n in batches)
        saved = [(v, v.numpy()) for layer in self._layers for v in (layer.moving_mean, layer.moving_variance)]
        loss, gradients, moments = 0.0, None, []
        for x, y, n in batches:
            weighted, grads, layer_moments = self._micro(x, y, tf.constant(n / total, tf.float64))
            loss += float(weighted)
            gradients = list(grads) if gradients is None else \
                [g if a is None else a if g is None else a + g for a, g in zip(gradients, grads)]
            moments.append([tuple(np.asarray(t) for t in m) for m in layer_moments])
        for variable, value in saved:  # undo the k updates of the forward passes ...
            variable.assign(value)
        statistics = {}
        for j, layer in enumerate(self._layers):  # ... and make one
            counts = np.array([m[j][0] for m in moments])
            means, variances = np.stack([m[j][1] for m in moments]), np.stack([m[j][2] for m in moments])
            weights = (counts / counts.sum())[:, None]
            mean = (weights * means).sum(axis=0)
            variance = (weights * variances).sum(axis=0)
            if self.statistics == "pooled":
                variance = variance + (weights * (means - mean) ** 2).sum(axis=0)
            statistics[layer.path] = BNStatistics(mean, variance)
            for variable, value in ((layer.moving_mean, mean), (layer.moving_variance, variance)):
                updated = ema_update(variable.numpy(), value, float(layer.momentum))
                variable.assign(updated.astype(variable.dtype))
        return AccumulatedGradients(loss, gradients, statistics)

    def step(self, optimizer, micro_batches) -> float:
        """One optimizer step on the accumulated gradients (variables without one are left alone);
        returns the mean loss over all examples."""
        result = self.gradients(micro_batches)
        pairs = [(g, v) for g, v in zip(result.gradients, self.model.trainable_variables) if g is not None]
        if pairs:
            optimizer.apply_gradients(pairs)
        return result.loss

    def run(self, optimizer, x, y, schedule, *, micro_batches: int) -> np.ndarray:
        """One :meth:`step` per row of ``schedule`` (``(steps, batch_size)`` indices into ``x``/``y``, see
        :mod:`bnhelpers.training.batches`), each row cut into ``micro_batches`` with :func:`split_batch`.
        Returns the losses, shape ``(steps,)``."""
        x, y, schedule = np.asarray(x), np.asarray(y), np.asarray(schedule)
        if len(x) != len(y):
            raise ValueError(f"x and y disagree in length: {len(x)} vs {len(y)}")
        if schedule.ndim != 2 or schedule.shape[0] < 1 or schedule.shape[1] < 1:
            raise ValueError(f"schedule must have shape (steps, batch_size), got {schedule.shape}")
        if schedule.min() < 0 or schedule.max() >= len(x):
            raise ValueError(f"schedule indices must lie in [0, {len(x)})")
        return np.array([self.step(optimizer, split_batch(x[rows], y[rows], micro_batches))
                         for rows in schedule])


def accumulate_gradients(model, micro_batches, loss_fn, *, statistics: str = "pooled") -> AccumulatedGradients:
    """One-off :meth:`GradientAccumulator.gradients` (for a loop, make one :class:`GradientAccumulator`)."""
    return GradientAccumulator(model, loss_fn, statistics=statistics).gradients(micro_batches)


def accumulation_step(model, optimizer, loss_fn, micro_batches, *, statistics: str = "pooled") -> float:
    """One-off :meth:`GradientAccumulator.step`: the accumulation counterpart of
    :func:`bnhelpers.training.steps.gradient_step`; returns the mean loss."""
    return GradientAccumulator(model, loss_fn, statistics=statistics).step(optimizer, micro_batches)
