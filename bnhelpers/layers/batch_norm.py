"""``MomentsBatchNorm``: a Keras 3 layer built from ``tf.nn.moments``, equal to ``keras.layers.BatchNormalization``.

In training mode (``training=True`` and ``trainable``) it normalizes with the
batch mean and biased variance over every axis except ``axis`` and updates::

    moving_mean     <- momentum * moving_mean     + (1 - momentum) * batch_mean
    moving_variance <- momentum * moving_variance + (1 - momentum) * batch_variance

Otherwise it normalizes with the moving statistics and changes nothing. As in
Keras 3, a layer with ``trainable=False`` always runs in inference mode.

Chapters: 4.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from ..core.validation import check_epsilon, check_float, check_momentum

__all__ = ["MomentsBatchNorm"]


@keras.saving.register_keras_serializable(package="bnhelpers")
class MomentsBatchNorm(keras.layers.Layer):
    """Batch normalization over all axes but ``axis`` (default: the last, channels-last).

    Arguments mirror Keras's layer: ``momentum`` in [0, 1] weighs the *old*
    average; ``epsilon`` > 0 is added to the variance; ``center``/``scale``
    switch beta/gamma on. Weights: ``gamma``, ``beta`` (trainable) and
    ``moving_mean``, ``moving_variance`` (not trainable), each of shape ``(C,)``.
    """

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, int) or isinstance(axis, bool):
            raise TypeError(f"axis must be an int, got {axis!r}")
        self.momentum = check_momentum(momentum)   # 1 keeps the moving statistics as they are
        self.epsilon = check_epsilon(epsilon)
        if self.epsilon == 0:
            raise ValueError("epsilon must be > 0 in a layer (a channel with zero variance would divide by zero)")
        self.axis = axis
        self.center = bool(center)
        self.scale = bool(scale)
        self.supports_masking = False

    def build(self, input_shape):
        rank = len(input_shape)
        if rank < 2:
            raise ValueError(f"MomentsBatchNorm needs rank >= 2 inputs, got shape {input_shape}")
        if not -rank <= self.axis < rank:
            raise ValueError(f"axis {self.axis} is out of range for a rank-{rank} input")
        self._axis = self.axis % rank
        if self._axis == 0:
            raise ValueError("axis 0 is the batch axis; BN normalizes over it, not along it")
        channels = input_shape[self._axis]
        if channels is None:
            raise ValueError(f"the size of axis {self.axis} must be known, got shape {input_shape}")
        self._reduction_axes = [i for i in range(rank) if i != self._axis]
        shape = (channels,)
        self.gamma = self.add_weight(shape=shape, initializer="ones", name="gamma",
                                     trainable=True) if self.scale else None
        self.beta = self.add_weight(shape=shape, initializer="zeros", name="beta",
                                    trainable=True) if self.center else None
        self.moving_mean = self.add_weight(shape=shape, initializer="zeros",
                                           name="moving_mean", trainable=False)
        self.moving_variance = self.add_weight(shape=shape, initializer="ones",
                                               name="moving_variance", trainable=False)

    def _broadcast(self, value, rank):
        shape = [1] * rank
        shape[self._axis] = -1
        return tf.reshape(value, shape)

    def call(self, inputs, training=None):
        check_float(inputs, "inputs")
        # Like Keras: compute statistics in at least float32.
        dtype = tf.float32 if inputs.dtype in (tf.float16, tf.bfloat16) else inputs.dtype
        x = tf.cast(inputs, dtype)
        rank = len(x.shape)
        if training and self.trainable:
            mean, variance = tf.nn.moments(x, axes=self._reduction_axes)
            m = tf.constant(self.momentum, dtype)  # not tf.cast, which rounds 0.99 to float32 first
            self.moving_mean.assign(tf.cast(self.moving_mean, dtype) * m + mean * (1 - m))
            self.moving_variance.assign(
                tf.cast(self.moving_variance, dtype) * m + variance * (1 - m))
        else:
            mean = tf.cast(self.moving_mean, dtype)
            variance = tf.cast(self.moving_variance, dtype)
        gamma = None if self.gamma is None else self._broadcast(tf.cast(self.gamma, dtype), rank)
        beta = None if self.beta is None else self._broadcast(tf.cast(self.beta, dtype), rank)
        y = tf.nn.batch_normalization(
            x, self._broadcast(mean, rank), self._broadcast(variance, rank),
            offset=beta, scale=gamma, variance_epsilon=self.epsilon)
        return tf.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(axis=self.axis, momentum=self.momentum, epsilon=self.epsilon,
                      center=self.center, scale=self.scale)
        return config
