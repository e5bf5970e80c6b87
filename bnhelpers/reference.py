"""Batch normalization in NumPy float64: the reference every other version is tested against.

Forward (training mode), over the reduction ``axes`` with ``m`` values per feature::

    mu    = mean(x)                    # over axes
    var   = mean((x - mu) ** 2)        # biased, divides by m
    x_hat = (x - mu) / sqrt(var + eps)
    y     = gamma * x_hat + beta

Backward, the compact form (sums over the same axes)::

    dbeta  = sum(dy)
    dgamma = sum(dy * x_hat)
    dx     = gamma / (m * sqrt(var + eps)) * (m * dy - sum(dy) - x_hat * sum(dy * x_hat))

Inference uses population statistics instead of batch statistics, which makes
BN one affine map per feature: ``y = scale * x + shift`` (see :func:`affine_form`).
As in CS231n's ``layers.py``, the forward pass returns a cache that the
backward pass consumes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .validation import broadcast_shape, check_batch, check_float

__all__ = [
    "BatchNormCache",
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_inference",
    "affine_form",
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


def batchnorm_forward(x, gamma, beta, axes=None, eps: float = 1e-3):
    """Training-mode BN of ``x`` with batch statistics over ``axes``.

    ``x``: float array of rank >= 2, e.g. ``(N, C)`` or ``(N, H, W, C)``.
    ``gamma``, ``beta``: shape of the kept axes (``(C,)`` by default).
    Returns ``(y, cache)``; ``y`` has the shape of ``x``, in float64.
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
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
        inv_std = 1.0 / np.sqrt(var + eps)
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


def affine_form(gamma, beta, mean, variance, eps: float = 1e-3):
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
    scale = gamma / np.sqrt(variance + eps)
    return scale, beta - mean * scale


def batchnorm_inference(x, gamma, beta, mean, variance, axes=None, eps: float = 1e-3):
    """Inference-mode BN of ``x`` with fixed (population) ``mean`` and ``variance``.

    Parameters have the shape of the kept axes; the output does not depend on
    the other samples in the batch. Returns ``y`` in float64, shape of ``x``.
    """
    params = {"gamma": gamma, "beta": beta, "mean": mean, "variance": variance}
    axes = check_batch(x, axes, training=False, params=params)
    x = _as_float64(x, "x")
    scale, shift = affine_form(gamma, beta, mean, variance, eps)
    bshape = broadcast_shape(x.shape, axes)
    return x * scale.reshape(bshape) + shift.reshape(bshape)
