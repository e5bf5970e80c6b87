"""``FusedBatchNormalization``: Keras 3 batch normalization on TensorFlow's fused kernel ``FusedBatchNormV3``.

A drop-in for ``keras.layers.BatchNormalization`` on channels-last inputs (``axis=-1``): same arguments, same
weights in the same order with the same names (``gamma``, ``beta``, ``moving_mean``, ``moving_variance``, each of
shape ``(C,)``), same ``training``/``trainable`` semantics and the same moving-variance convention, so
``set_weights`` copies one layer into the other and the outputs agree to float32 rounding.

Shapes. ``x`` has rank >= 2 and the channels on the last axis: ``(N, C)``, ``(N, L, C)``, ``(N, H, W, C)``,
``(N, D, H, W, C)``. The statistics are over every axis but the last, ``m = size(x) / C`` values per channel. The
kernel takes NHWC, so the layer reshapes ``x`` to ``(m, 1, 1, C)`` (a view: no data is moved), normalizes, and
reshapes back; for rank-4 inputs this is the same reduction as passing NHWC directly.

The math, per channel (``x`` in float16/bfloat16 is read by the kernel and accumulated in float32)::

    mu        = sum(x) / m
    var_b     = sum((x - mu) ** 2) / m            # biased: what normalizes the batch, and Keras 3's statistic
    var_u     = m / (m - 1) * var_b               # unbiased: what FusedBatchNormV3 returns as batch_variance
    y         = gamma * (x - mu) / sqrt(var_b + epsilon) + beta

Training mode (``training=True`` and ``self.trainable``) normalizes with ``mu`` and ``var_b`` and updates, exactly as
Keras 3 does (``momentum`` is the weight of the *old* average)::

    moving_mean     <- momentum * moving_mean     + (1 - momentum) * mu
    moving_variance <- momentum * moving_variance + (1 - momentum) * var_b,   var_b = (m - 1) / m * var_u

The op is called with ``exponential_avg_factor=1`` (it returns the batch statistics, not an average) and the layer
converts the op's unbiased variance back to the biased one before updating; a batch of one value per channel
(``m = 1``) gives ``var_b = 0``, as in Keras. (tf-keras 2's fused layer stored the *unbiased* variance; PyTorch
does too; see :mod:`bnhelpers.core.conventions`.) Otherwise (inference, or a layer with ``trainable=False``, which
in Keras 3 always runs in inference mode) the op is called with ``is_training=False`` and the moving statistics,
and nothing changes: ``y = gamma * (x - moving_mean) / sqrt(moving_variance + epsilon) + beta``.

What the fused kernel saves. Keras 3's layer is ``tf.nn.moments`` (a mean, then a mean of squared deviations) plus
``tf.nn.batch_normalization`` (several elementwise ops), each a separate pass over ``x`` with intermediate tensors
written to memory, and its gradient is the autodiff of all of those ops. ``FusedBatchNormV3`` computes the per-channel
statistics and writes ``y`` in one kernel (statistics pass fused with the normalization; no intermediate tensors of
the size of ``x``), and its registered gradient ``FusedBatchNormGradV3`` computes ``dx``, ``dgamma`` and ``dbeta``
together from ``x``, ``dy`` and the statistics the forward op saved (``reserve_space_1``/``_2``: the batch mean
and, on CPU, the biased variance; cuDNN saves the inverse standard deviation), i.e. the compact form of
:func:`bnhelpers.core.reference.batchnorm_backward`::

    dbeta  = sum(dy);   dgamma = sum(dy * x_hat)
    dx     = gamma / (m * sqrt(var_b + epsilon)) * (m * dy - dbeta - x_hat * dgamma)

Dtypes. Compute dtypes float32, float16 and bfloat16 (the op's ``T``); gamma, beta and the statistics are float32
(the op's ``U``), as in Keras's mixed precision: ``FusedBatchNormalization(dtype="mixed_float16")`` keeps float32
variables and returns float16. Variables of another dtype (a plain ``"bfloat16"`` policy) are cast to float32 for
the op and the updates are cast back. Without a visible GPU, float16 and bfloat16 inputs are cast to float32 around
the kernel: TensorFlow's CPU kernel converts half-precision values one by one in its inner loops, and on a
168x56x56x128 float16 input the cast-float32-cast path took 6.5 times as long as a float16 copy where the half
kernel took 8.7 times (``benchmarks/results/2026-11-30-amd-epyc-2core.json``, ``float16_profile``). float64 is not supported by the kernel: a ``TypeError`` says so (use
``keras.layers.BatchNormalization``).

Limits. Only the last axis (``axis=-1``, or ``rank - 1`` once the rank is known; anything else raises a
``ValueError``); the channel count must be known when the layer is built; no ``renorm``, no ``synchronized``
(cross-replica) statistics and no masks (``renorm=True``/``synchronized=True`` raise). ``epsilon`` must be > 0;
the CPU kernel uses it as given (``tf.compat.v1.nn.fused_batch_norm`` would clamp it to 1.001e-5 for cuDNN; this
layer does not). XLA compiles the op (``jit_compile=True`` works on CPU).

Chapters: 8.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from ..core.validation import check_epsilon, check_float, check_momentum

__all__ = ["FusedBatchNormalization", "SUPPORTED_DTYPES"]

SUPPORTED_DTYPES = ("float32", "float16", "bfloat16")   # the kernel's T; its U (parameters, statistics) is float32


def _dtype_name(dtype) -> str:
    return tf.as_dtype(dtype).name


@keras.saving.register_keras_serializable(package="bnhelpers")
class FusedBatchNormalization(keras.layers.Layer):
    """Channels-last batch normalization on ``tf.raw_ops.FusedBatchNormV3``; a drop-in for Keras's layer.

    Arguments are those of ``keras.layers.BatchNormalization``: ``axis`` (only the last axis), ``momentum`` in
    [0, 1] (the weight of the *old* average), ``epsilon`` > 0, ``center``/``scale`` (beta/gamma on or off), the four
    initializers, ``beta_regularizer``/``gamma_regularizer``, ``beta_constraint``/``gamma_constraint``, and
    ``**kwargs`` for ``keras.layers.Layer`` (``name``, ``dtype``, ``trainable``...). ``synchronized`` and
    ``renorm`` are accepted only as ``False`` (so a Keras config loads), and ``renorm_clipping``/``renorm_momentum``
    are then ignored as by Keras.
    """

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None,
                 beta_constraint=None, gamma_constraint=None,
                 synchronized: bool = False, renorm: bool = False, renorm_clipping=None, renorm_momentum=0.99,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise TypeError(f"axis must be an int, got {axis!r}; FusedBatchNormalization supports only the last "
                            f"axis (axis=-1, channels-last)")
        if axis < 0 and axis != -1:
            raise ValueError(f"FusedBatchNormalization supports only the last axis (axis=-1, channels-last), got "
                             f"axis={axis}; use keras.layers.BatchNormalization(axis={axis}) or transpose to "
                             f"channels-last")
        if synchronized:
            raise ValueError("FusedBatchNormalization does not support synchronized=True (cross-replica "
                             "statistics); use keras.layers.BatchNormalization(synchronized=True)")
        if renorm:
            raise ValueError("FusedBatchNormalization does not support renorm=True; use "
                             "keras.layers.BatchNormalization(renorm=True)")
        self.axis = axis
        self.momentum = check_momentum(momentum)
        self.epsilon = check_epsilon(epsilon)
        if self.epsilon == 0:
            raise ValueError("epsilon must be > 0 in a layer (a channel with zero variance would divide by zero)")
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = keras.initializers.get(beta_initializer)
        self.gamma_initializer = keras.initializers.get(gamma_initializer)
        self.moving_mean_initializer = keras.initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = keras.initializers.get(moving_variance_initializer)
        self.beta_regularizer = keras.regularizers.get(beta_regularizer)
        self.gamma_regularizer = keras.regularizers.get(gamma_regularizer)
        self.beta_constraint = keras.constraints.get(beta_constraint)
        self.gamma_constraint = keras.constraints.get(gamma_constraint)
        self.supports_masking = False
        self._check_compute_dtype(self.compute_dtype, "the layer's compute dtype")

    @staticmethod
    def _check_compute_dtype(dtype, what):
        name = _dtype_name(dtype)
        if name not in SUPPORTED_DTYPES:
            raise TypeError(f"FusedBatchNormV3 supports {', '.join(SUPPORTED_DTYPES)} inputs; {what} is {name} "
                            f"(use keras.layers.BatchNormalization for {name})")

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        rank = len(input_shape)
        if rank < 2:
            raise ValueError(f"FusedBatchNormalization needs inputs of rank >= 2 (N, ..., C), got shape "
                             f"{input_shape}")
        if self.axis not in (-1, rank - 1):
            raise ValueError(f"FusedBatchNormalization supports only the last axis (axis=-1, channels-last), got "
                             f"axis={self.axis} for a rank-{rank} input; use keras.layers.BatchNormalization("
                             f"axis={self.axis}) or transpose to channels-last")
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"the number of channels (last axis) must be known, got shape {input_shape}")
        shape = (int(channels),)
        # Same names, order and dtypes as keras.layers.BatchNormalization (so set_weights copies across).
        self.gamma = self.add_weight(shape=shape, name="gamma", initializer=self.gamma_initializer,
                                     regularizer=self.gamma_regularizer, constraint=self.gamma_constraint,
                                     trainable=True, autocast=False) if self.scale else None
        self.beta = self.add_weight(shape=shape, name="beta", initializer=self.beta_initializer,
                                    regularizer=self.beta_regularizer, constraint=self.beta_constraint,
                                    trainable=True, autocast=False) if self.center else None
        self.moving_mean = self.add_weight(shape=shape, name="moving_mean",
                                           initializer=self.moving_mean_initializer, trainable=False,
                                           autocast=False)
        self.moving_variance = self.add_weight(shape=shape, name="moving_variance",
                                               initializer=self.moving_variance_initializer, trainable=False,
                                               autocast=False)
        self._channels = int(channels)

    def call(self, inputs, training=None):
        check_float(inputs, "inputs")
        self._check_compute_dtype(inputs.dtype, "the input dtype")
        if inputs.shape.rank is None or inputs.shape.rank < 2:
            raise ValueError(f"FusedBatchNormalization needs inputs of rank >= 2 (N, ..., C), got shape "
                             f"{inputs.shape}")
        if inputs.shape[-1] != self._channels:
            raise ValueError(f"the layer was built for {self._channels} channels, got an input of shape "
                             f"{inputs.shape}")
        f32 = tf.float32
        channels = self._channels
        gamma = tf.ones((channels,), f32) if self.gamma is None else tf.cast(self.gamma, f32)
        beta = tf.zeros((channels,), f32) if self.beta is None else tf.cast(self.beta, f32)
        x = inputs if inputs.shape.rank == 4 else tf.reshape(inputs, (-1, 1, 1, channels))
        if x.dtype != f32 and not tf.config.list_logical_devices("GPU"):
            x = tf.cast(x, f32)   # the CPU kernel's half path is 2x slower than casting around its float32 path
        if training and self.trainable:
            empty = tf.constant([], f32)
            out = tf.raw_ops.FusedBatchNormV3(x=x, scale=gamma, offset=beta, mean=empty, variance=empty,
                                              epsilon=self.epsilon, exponential_avg_factor=1.0,
                                              data_format="NHWC", is_training=True)
            m = tf.cast(tf.size(x, out_type=tf.int64) // channels, f32)
            biased = out.batch_variance * tf.maximum(m - 1.0, 0.0) / tf.maximum(m, 1.0)   # m/(m-1) undone
            momentum = tf.constant(self.momentum, f32)
            for variable, batch in ((self.moving_mean, out.batch_mean), (self.moving_variance, biased)):
                new = momentum * tf.cast(variable, f32) + (1.0 - momentum) * batch
                variable.assign(tf.cast(new, variable.dtype))
        else:
            out = tf.raw_ops.FusedBatchNormV3(x=x, scale=gamma, offset=beta,
                                              mean=tf.cast(self.moving_mean, f32),
                                              variance=tf.cast(self.moving_variance, f32),
                                              epsilon=self.epsilon, exponential_avg_factor=1.0,
                                              data_format="NHWC", is_training=False)
        y = out.y if inputs.shape.rank == 4 else tf.reshape(out.y, tf.shape(inputs))
        return tf.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            axis=self.axis, momentum=self.momentum, epsilon=self.epsilon, center=self.center, scale=self.scale,
            beta_initializer=keras.initializers.serialize(self.beta_initializer),
            gamma_initializer=keras.initializers.serialize(self.gamma_initializer),
            moving_mean_initializer=keras.initializers.serialize(self.moving_mean_initializer),
            moving_variance_initializer=keras.initializers.serialize(self.moving_variance_initializer),
            beta_regularizer=keras.regularizers.serialize(self.beta_regularizer),
            gamma_regularizer=keras.regularizers.serialize(self.gamma_regularizer),
            beta_constraint=keras.constraints.serialize(self.beta_constraint),
            gamma_constraint=keras.constraints.serialize(self.gamma_constraint),
        )
        return config
