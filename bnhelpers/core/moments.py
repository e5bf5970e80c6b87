"""Batch normalization from TensorFlow's primitives: ``tf.nn.moments`` + ``tf.nn.batch_normalization``.

Axis conventions as in :mod:`bnhelpers.core.validation`: ``axes`` are reduced;
``None`` means all but the last (``[0]`` for dense ``(N, C)``, ``[0, 1, 2]``
for NHWC images). ``tf.nn.moments`` returns the *biased* variance (divides by m).

Chapters: 1.
"""

from __future__ import annotations

import tensorflow as tf

from .validation import broadcast_shape, check_batch, check_epsilon, param_shape

__all__ = ["moments_batch_norm", "moments_batch_norm_inference"]


def _param(value, dtype, shape):
    return tf.reshape(tf.cast(value, dtype), shape)


def moments_batch_norm(x, gamma, beta, axes=None, epsilon: float = 1e-3):
    """Training-mode BN with batch statistics.

    ``x``: float tensor, rank >= 2. ``gamma``, ``beta``: shape of the kept axes.
    Returns ``(y, mean, variance)``: ``y`` like ``x``; ``mean`` and the biased
    ``variance`` with the parameter shape. Differentiable with ``tf.GradientTape``.
    """
    epsilon = check_epsilon(epsilon)
    axes = check_batch(x, axes, training=True, params={"gamma": gamma, "beta": beta})
    x = tf.convert_to_tensor(x)
    bshape = broadcast_shape(x.shape, axes)
    mean, variance = tf.nn.moments(x, axes=list(axes), keepdims=True)
    y = tf.nn.batch_normalization(
        x,
        mean,
        variance,
        offset=_param(beta, x.dtype, bshape),
        scale=_param(gamma, x.dtype, bshape),
        variance_epsilon=epsilon,
    )
    pshape = param_shape(x.shape, axes)
    return y, tf.reshape(mean, pshape), tf.reshape(variance, pshape)


def moments_batch_norm_inference(x, gamma, beta, mean, variance, axes=None, epsilon: float = 1e-3):
    """Inference-mode BN with given population ``mean`` and ``variance`` (parameter shape)."""
    params = {"gamma": gamma, "beta": beta, "mean": mean, "variance": variance}
    axes = check_batch(x, axes, training=False, params=params)
    epsilon = check_epsilon(epsilon)
    x = tf.convert_to_tensor(x)
    bshape = broadcast_shape(x.shape, axes)
    return tf.nn.batch_normalization(
        x,
        _param(mean, x.dtype, bshape),
        _param(variance, x.dtype, bshape),
        offset=_param(beta, x.dtype, bshape),
        scale=_param(gamma, x.dtype, bshape),
        variance_epsilon=epsilon,
    )
