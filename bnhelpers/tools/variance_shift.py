"""Dropout's variance shift (Li et al. 2019): what a BN layer learned in training against what it receives at inference.

Inverted dropout with rate ``p`` multiplies each value ``h`` by ``m / (1 - p)``, ``m`` a Bernoulli(``1 - p``)
draw independent of ``h``. Its output keeps the mean ``E[h]`` but, in training, has the variance
``(Var[h] + p * E[h]**2) / (1 - p)`` (:func:`dropout_variance`); at inference dropout is the identity and
the variance is ``Var[h]``. A BN layer placed after dropout learns its moving variance from the first and
is applied to the second.

- :func:`dropout_variance`: that formula, elementwise on NumPy arrays.
- :func:`inference_input_statistics`: mean and biased variance (float64, shape ``(C,)``) of each BN layer's
  input over a data set, in the model's **own** inference mode: dropout off, and every upstream BN layer
  normalizing with its moving statistics as it does at inference. (This is what differs from
  :func:`bnhelpers.tools.population.estimate_bn_statistics` with ``upstream="inference"``, which re-estimates
  the upstream layers first.)
- :func:`variance_ratios`: per BN layer, moving variance / inference-time input variance, shape ``(C,)``.

Results are dicts ``{layer.path: ...}`` keyed like :func:`bnhelpers.tools.population.get_bn_statistics`, in the
order the forward pass calls the layers; statistics are :class:`bnhelpers.tools.population.BNStatistics`. The
model must be functional or Sequential (nested ones are fine), as for
:func:`bnhelpers.layers.walk.layer_inputs_model`. Inputs are cast to ``keras.config.floatx()``.

Chapters: 10.
"""

from __future__ import annotations

import keras
import numpy as np

from ..core.validation import check_positive_int
from ..layers.walk import bn_layers, bn_axis, layer_inputs_model
from .population import BNStatistics, get_bn_statistics

__all__ = ["dropout_variance", "inference_input_statistics", "variance_ratios"]


def dropout_variance(mean, variance, rate: float) -> np.ndarray:
    """Variance of inverted dropout's output in training, ``(variance + rate * mean**2) / (1 - rate)``.

    ``mean`` and ``variance`` are those of dropout's input (broadcast against each other);
    ``rate`` is the probability of dropping a value, in ``[0, 1)``.
    """
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate must be in [0, 1), got {rate}")
    mean, variance = np.asarray(mean, dtype=np.float64), np.asarray(variance, dtype=np.float64)
    if np.any(variance < 0):
        raise ValueError("variance must be non-negative")
    return (variance + rate * mean**2) / (1.0 - rate)


def inference_input_statistics(model, x, *, batch_size: int = 256) -> dict[str, BNStatistics]:
    """Mean and biased variance of every BN layer's input over ``x`` (``(N, ...)``) in inference mode.

    The model runs as ``model(x, training=False)`` does, batch by batch; the statistics
    are per channel (the layer's ``axis``) over all other axes and all ``N`` examples.
    """
    check_positive_int(batch_size=batch_size)
    x = np.asarray(x, dtype=keras.config.floatx())
    if x.shape[0] == 0:
        raise ValueError("x is empty")
    layers = bn_layers(model)
    tap, order = layer_inputs_model(model, layers)
    chunks = [[] for _ in order]
    for start in range(0, x.shape[0], batch_size):
        outputs = keras.tree.flatten(tap(x[start:start + batch_size], training=False))
        for k, (layer, value) in enumerate(zip(order, outputs)):
            value = np.moveaxis(np.asarray(value, dtype=np.float64), bn_axis(layer), -1)
            chunks[k].append(value.reshape(-1, value.shape[-1]))
    result = {}
    for layer, parts in zip(order, chunks):
        values = np.concatenate(parts)
        result[layer.path] = BNStatistics(values.mean(axis=0), values.var(axis=0))
    return result


def variance_ratios(model, x, *, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Per BN layer, ``moving_variance / variance of its input at inference`` over ``x``, shape ``(C,)``.

    A channel whose inference-time variance is 0 (a unit that is dead on ``x``) gives ``inf``
    (or ``nan`` when the moving variance is 0 too).
    """
    moving = get_bn_statistics(model)
    seen = inference_input_statistics(model, x, batch_size=batch_size)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {path: moving[path].variance / stats.variance for path, stats in seen.items()}
