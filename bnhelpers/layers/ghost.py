"""``GhostBatchNormalization``: BN whose training statistics come from small *virtual* batches.

Hoffer et al. (2017) split a large batch into "ghost" batches of
``virtual_batch_size`` examples and normalize each with its own statistics, so
a large-batch run gets the regularizing noise of small batches. Keras 3's
``BatchNormalization`` has no ``virtual_batch_size`` (tf-keras had one), hence
this layer.

Training mode (``training=True`` and ``trainable``), input ``(N, ..., C, ...)``:
examples ``0..v-1`` form ghost batch 0, ``v..2v-1`` ghost batch 1, and so on;
the last ghost batch is smaller when ``v`` does not divide ``N``. Each ghost
batch is normalized with its mean and biased variance over its examples and
every axis but ``axis`` (the channel axis, default -1). The moving averages are
updated once per call with the average of the ghost means and of the ghost
variances, weighted by ghost-batch size (the variance the layer actually
normalized with, as tf-keras did). Inference mode uses the moving statistics
and is identical to ``MomentsBatchNorm``/``keras.layers.BatchNormalization``.
With ``virtual_batch_size >= N`` training mode is ordinary BN.

Chapters: 6, 11.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from ..core.validation import check_float
from .batch_norm import MomentsBatchNorm

__all__ = ["GhostBatchNormalization"]


@keras.saving.register_keras_serializable(package="bnhelpers")
class GhostBatchNormalization(MomentsBatchNorm):
    """Batch normalization over ghost batches of ``virtual_batch_size`` examples (see module docstring).

    Other arguments and weights as in :class:`bnhelpers.layers.batch_norm.MomentsBatchNorm`.
    """

    def __init__(self, virtual_batch_size: int, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(virtual_batch_size, int) or isinstance(virtual_batch_size, bool):
            raise TypeError(f"virtual_batch_size must be an int, got {virtual_batch_size!r}")
        if virtual_batch_size < 1:
            raise ValueError(f"virtual_batch_size must be >= 1, got {virtual_batch_size}")
        self.virtual_batch_size = virtual_batch_size

    def _ghost_moments(self, x):
        """Per-example ghost statistics: returns ``(mean, variance, ghost_mean, ghost_variance)``;
        the first two have shape ``(N, C)`` (each example's ghost batch), the last two ``(C,)``."""
        n = tf.shape(x)[0]
        xc = tf.experimental.numpy.moveaxis(x, self._axis, -1)
        channels = xc.shape[-1]
        flat = tf.reshape(xc, [n, -1, channels])                       # (N, S, C)
        per_value = tf.cast(tf.shape(flat)[1], x.dtype)
        ids = tf.range(n) // self.virtual_batch_size
        groups = (n + self.virtual_batch_size - 1) // self.virtual_batch_size
        counts = tf.math.unsorted_segment_sum(tf.ones([n], x.dtype), ids, groups) * per_value  # (G,)
        sums = tf.math.unsorted_segment_sum(tf.reduce_sum(flat, axis=1), ids, groups)         # (G, C)
        group_mean = sums / counts[:, None]
        centered = flat - tf.gather(group_mean, ids)[:, None, :]
        squares = tf.math.unsorted_segment_sum(tf.reduce_sum(centered**2, axis=1), ids, groups)
        group_var = squares / counts[:, None]
        weights = counts / tf.reduce_sum(counts)
        batch_mean = tf.reduce_sum(group_mean * weights[:, None], axis=0)
        batch_var = tf.reduce_sum(group_var * weights[:, None], axis=0)
        return tf.gather(group_mean, ids), tf.gather(group_var, ids), batch_mean, batch_var

    def _per_example(self, value, rank):
        """Broadcast an ``(N, C)`` tensor against the input: batch axis 0, channels at ``axis``."""
        shape = [1] * rank
        shape[0] = -1
        shape[self._axis] = value.shape[-1]
        return tf.reshape(value, shape)

    def call(self, inputs, training=None):
        if not (training and self.trainable):
            return super().call(inputs, training=False)
        check_float(inputs, "inputs")
        dtype = tf.float32 if inputs.dtype in (tf.float16, tf.bfloat16) else inputs.dtype
        x = tf.cast(inputs, dtype)
        rank = len(x.shape)
        mean, variance, batch_mean, batch_var = self._ghost_moments(x)
        m = tf.constant(self.momentum, dtype)  # not tf.cast, which rounds 0.99 to float32 first
        self.moving_mean.assign(tf.cast(self.moving_mean, dtype) * m + batch_mean * (1 - m))
        self.moving_variance.assign(tf.cast(self.moving_variance, dtype) * m + batch_var * (1 - m))
        y = (x - self._per_example(mean, rank)) * tf.math.rsqrt(self._per_example(variance, rank) + self.epsilon)
        if self.gamma is not None:
            y = y * self._broadcast(tf.cast(self.gamma, dtype), rank)
        if self.beta is not None:
            y = y + self._broadcast(tf.cast(self.beta, dtype), rank)
        return tf.cast(y, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(virtual_batch_size=self.virtual_batch_size)
        return config
