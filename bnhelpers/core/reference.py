"""Batch normalization in NumPy float64: the reference every other version is tested against.

Forward (training mode), over the reduction ``axes`` with ``m`` values per feature::

    mu    = mean(x)                    # over axes
    var   = mean((x - mu) ** 2)        # biased, divides by m
    x_hat = (x - mu) / sqrt(var + epsilon)
    y     = gamma * x_hat + beta

Backward, the compact form (sums over the same axes)::

    dbeta  = sum(dy)
    dgamma = sum(dy * x_hat)
    dx     = gamma / (m * sqrt(var + epsilon)) * (m * dy - sum(dy) - x_hat * sum(dy * x_hat))

Inference uses population statistics instead of batch statistics, which makes
BN one affine map per feature: ``y = scale * x + shift`` (see :func:`affine_form`).
As in CS231n's ``layers.py``, the forward pass returns a cache that the
backward pass consumes. :func:`algorithm2_statistics` computes the population
statistics that inference uses the way Ioffe & Szegedy's Algorithm 2 defines them.

``epsilon`` may be 0 here (chapter 1 studies what it does); Keras layers need it > 0.

Chapters: 1, 7, 8, 11.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .validation import broadcast_shape, check_batch, check_epsilon, check_float

__all__ = [
    "BatchNormCache",
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_inference",
    "affine_form",
    "algorithm2_statistics",
]


@dataclass(frozen=True)
class BatchNormCache:
    """What the backward pass needs: ``x_hat`` (shape of x), ``inv_std`` and ``gamma``
    (broadcastable to x), the reduction ``axes`` and the count ``m``."""

    x_hat: np.ndarray
    inv_std: np.ndarray
    gamma: np.ndarray
    axes: tuple[int, ...]
    m: int


def _as_float64(value, name):
    check_float(value, name)
    return np.asarray(value, dtype=np.float64)


def batchnorm_forward(x, gamma, beta, axes=None, epsilon: float = 1e-3):
    """Training-mode BN of ``x`` with batch statistics over ``axes``.

    ``x``: float array of rank >= 2, e.g. ``(N, C)`` or ``(N, H, W, C)``.
    ``gamma``, ``beta``: shape of the kept axes (``(C,)`` by default).
    Returns ``(y, cache)``; ``y`` has the shape of ``x``, in float64.
    """
    epsilon = check_epsilon(epsilon)
    axes = check_batch(x, axes, training=True, params={"gamma": gamma, "beta": beta})
    x = _as_float64(x, "x")
    bshape = broadcast_shape(x.shape, axes)
    g = _as_float64(gamma, "gamma").reshape(bshape)
    b = _as_float64(beta, "beta").reshape(bshape)
    m = int(np.prod([x.shape[i] for i in axes]))
    mu = x.mean(axis=axes, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=axes, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_std = 1.0 / np.sqrt(var + epsilon)
        x_hat = xc * inv_std
    y = g * x_hat + b
    return y, BatchNormCache(x_hat=x_hat, inv_std=inv_std, gamma=g, axes=axes, m=m)


def batchnorm_backward(dy, cache: BatchNormCache):
    """Gradients of a loss through :func:`batchnorm_forward`.

    ``dy``: upstream gradient, shape of ``x``. Returns ``(dx, dgamma, dbeta)``;
    ``dgamma`` and ``dbeta`` have the shape of gamma and beta.
    """
    dy = _as_float64(dy, "dy")
    if dy.shape != cache.x_hat.shape:
        raise ValueError(f"dy has shape {dy.shape}, expected {cache.x_hat.shape}")
    axes, x_hat = cache.axes, cache.x_hat
    pshape = tuple(s for i, s in enumerate(x_hat.shape) if i not in axes)
    dbeta = dy.sum(axis=axes, keepdims=True)
    dgamma = (dy * x_hat).sum(axis=axes, keepdims=True)
    dx = cache.gamma * cache.inv_std / cache.m * (cache.m * dy - dbeta - x_hat * dgamma)
    return dx, dgamma.reshape(pshape), dbeta.reshape(pshape)


def affine_form(gamma, beta, mean, variance, epsilon: float = 1e-3):
    """Inference-mode BN as one affine map ``y = scale * x + shift`` (Ioffe & Szegedy, Alg. 2).

    All arguments have the parameter shape; returns ``(scale, shift)`` in float64.
    """
    gamma, beta, mean, variance = (
        _as_float64(v, n)
        for v, n in ((gamma, "gamma"), (beta, "beta"), (mean, "mean"), (variance, "variance"))
    )
    shapes = {v.shape for v in (gamma, beta, mean, variance)}
    if len(shapes) != 1:
        raise ValueError(f"gamma, beta, mean and variance must share one shape, got {shapes}")
    if np.any(variance < 0):
        raise ValueError("variance must be non-negative")
    epsilon = check_epsilon(epsilon)
    scale = gamma / np.sqrt(variance + epsilon)
    return scale, beta - mean * scale


def batchnorm_inference(x, gamma, beta, mean, variance, axes=None, epsilon: float = 1e-3):
    """Inference-mode BN of ``x`` with fixed (population) ``mean`` and ``variance``.

    Parameters have the shape of the kept axes; the output does not depend on
    the other samples in the batch. Returns ``y`` in float64, shape of ``x``.
    """
    params = {"gamma": gamma, "beta": beta, "mean": mean, "variance": variance}
    axes = check_batch(x, axes, training=False, params=params)
    x = _as_float64(x, "x")
    scale, shift = affine_form(gamma, beta, mean, variance, epsilon)
    bshape = broadcast_shape(x.shape, axes)
    return x * scale.reshape(bshape) + shift.reshape(bshape)


def algorithm2_statistics(batches) -> tuple[np.ndarray, np.ndarray]:
    """Population mean and variance by Ioffe & Szegedy's Algorithm 2.

    ``batches``: ``(n_batches, m, C)``, a layer's inputs over ``n_batches``
    mini-batches of ``m`` examples. Returns ``E[x]``, the mean of the batch
    means, and ``Var[x] = m/(m-1) * mean of the (biased) batch variances``, both ``(C,)``.
    """
    batches = np.asarray(batches, dtype=np.float64)
    if batches.ndim != 3:
        raise ValueError(f"batches must have shape (n_batches, m, C), got {batches.shape}")
    n_batches, m, _ = batches.shape
    if n_batches < 1 or m < 2:
        raise ValueError(f"need at least one batch of at least 2 examples, got {batches.shape}")
    return batches.mean(axis=1).mean(axis=0), m / (m - 1) * batches.var(axis=1).mean(axis=0)
