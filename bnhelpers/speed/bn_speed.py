"""How fast batch normalization runs: training-mode BN variants timed against a plain copy.

BN does a few arithmetic operations per element, so on large tensors its speed is set by
memory traffic. Throughput is reported as **GB/s of tensor data moved**, counting the
tensors each call reads and writes at its interface (``S`` = bytes of ``x``)::

    forward            read x, write y                          2 S
    forward+backward   read x, write y; read x and dy, write dx  5 S
    copy  (y = s * x)  read x, write y                          2 S

The copy is the machine's memory bandwidth as TensorFlow sees it, measured in the same
run; a memory-bound op cannot beat it. A two-pass BN forward (statistics, then normalize)
reads ``x`` twice, so even a perfect one reaches about 2/3 of the copy's GB/s by this count.

Variants (all channels-last, statistics over every axis but the last, training mode):

- ``keras``: ``keras.layers.BatchNormalization`` (Keras 3: ``tf.nn.moments`` +
  ``tf.nn.batch_normalization``; Keras 3 has no fused path);
- ``tf_keras_fused``: tf-keras's ``BatchNormalization(fused=True)``, the ``FusedBatchNormV3``
  kernel (only if the ``tf_keras`` package is installed);
- ``tf_nn``: :func:`bnhelpers.core.moments.moments_batch_norm` (``tf.nn.moments`` + ``tf.nn.batch_normalization``);
- ``bnhelpers``: :class:`bnhelpers.layers.batch_norm.MomentsBatchNorm`.

Each runs in a ``tf.function``, with and without ``jit_compile=True`` (XLA), in float32 and
(where the device supports it) float16, on whatever device TensorFlow places ops on.
:mod:`bnhelpers.speed.timing` times the calls; :mod:`bnhelpers.speed.report` reads the results.

Chapters: 8.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from ..core.moments import moments_batch_norm
from ..layers.batch_norm import MomentsBatchNorm
from .timing import time_call

__all__ = ["BYTES_PER_ELEMENT_MOVED", "MODES", "Timing", "variant_names", "benchmark"]

# Tensors of x's size read + written per call.
BYTES_PER_ELEMENT_MOVED = {"forward": 2, "forward+backward": 5, "copy": 2}
MODES = ("forward", "forward+backward")


@dataclass(frozen=True)
class Timing:
    """One measurement. ``seconds`` per call (best of the repeats), ``gb_per_s`` of data moved, ``error``:
    largest difference of ``y`` (and, with backward, ``dx``) from the float32 ``tf_nn`` variant
    in graph mode; ``status``: ``"ok"`` or why it did not run (then the numbers are NaN)."""

    variant: str
    jit: bool
    mode: str
    dtype: str
    shape: tuple[int, ...]
    seconds: float
    gb_per_s: float
    error: float
    status: str = "ok"


def _tf_keras():
    try:
        import tf_keras
    except ImportError:
        return None
    return tf_keras


def variant_names() -> list[str]:
    """The variants available in this environment, in table order."""
    names = ["keras", "tf_keras_fused", "tf_nn", "bnhelpers"]
    return [n for n in names if n != "tf_keras_fused" or _tf_keras() is not None]


def _forward(variant: str, channels: int, dtype) -> tuple[Callable, list]:
    """``(f, params)``: ``f(x) -> y`` in training mode and its trainable ``[gamma, beta]``."""
    if variant == "tf_nn":
        gamma = tf.Variable(tf.ones(channels, dtype))
        beta = tf.Variable(tf.zeros(channels, dtype))
        return (lambda x: moments_batch_norm(x, gamma, beta, axes=(0, 1, 2))[0]), [gamma, beta]
    if variant == "keras":
        layer = keras.layers.BatchNormalization(dtype=dtype.name)
    elif variant == "bnhelpers":
        layer = MomentsBatchNorm(dtype=dtype.name)
    elif variant == "tf_keras_fused":
        tf_keras = _tf_keras()
        if tf_keras is None:
            raise ValueError("tf_keras is not installed")
        layer = tf_keras.layers.BatchNormalization(fused=True, dtype=dtype.name)
    else:
        raise ValueError(f"unknown variant {variant!r}; choose from {variant_names()}")
    layer.build((None, None, None, channels))
    params = [layer.gamma, layer.beta]
    return (lambda x: layer(x, training=True)), params


def _compiled(variant, mode, channels, dtype, jit):
    forward, params = _forward(variant, channels, dtype)
    if mode == "forward":
        return tf.function(lambda x, dy: forward(x), jit_compile=jit)

    def forward_backward(x, dy):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = forward(x)
        return [y, *tape.gradient(y, [x, *params], output_gradients=dy)]

    return tf.function(forward_backward, jit_compile=jit)


def _copy(dtype, jit):
    scale = tf.Variable(1.0, dtype=dtype)  # a variable, so that XLA cannot drop the multiply
    return tf.function(lambda x, dy: x * scale, jit_compile=jit)


def benchmark(shapes: Sequence[Sequence[int]], *, variants: Sequence[str] | None = None,
              dtypes: Sequence[str] = ("float32",), modes: Sequence[str] = MODES,
              jit: Sequence[bool] = (False, True), repeats: int = 5, seed: int = 0) -> list[Timing]:
    """Time every combination on NHWC inputs of the given ``shapes``; returns a list of :class:`Timing`.

    For every shape and dtype the copy ``y = s * x`` is timed too (variant and mode ``"copy"``),
    right before the BN variants, so that both see the same machine load. A combination that
    fails to run (e.g. a dtype the device lacks) is kept with its status.
    """
    variants = list(variants or variant_names())
    unknown = set(variants) - set(variant_names())
    if unknown:
        raise ValueError(f"unknown or unavailable variants {sorted(unknown)}; choose from {variant_names()}")
    bad_modes = set(modes) - set(MODES)
    if bad_modes:
        raise ValueError(f"unknown modes {sorted(bad_modes)}; choose from {MODES}")
    rng = np.random.default_rng(seed)
    results = []
    for shape in shapes:
        shape = tuple(int(s) for s in shape)
        if len(shape) != 4 or min(shape) < 1:
            raise ValueError(f"shapes must be NHWC (4 positive sizes), got {shape}")
        x64 = rng.normal(1.0, 2.0, shape)
        dy64 = rng.normal(0.0, 1.0, shape)
        for dtype_name in dtypes:
            dtype = tf.as_dtype(dtype_name)
            x, dy = tf.constant(x64, dtype), tf.constant(dy64, dtype)
            reference = {mode: tf.nest.flatten(_compiled("tf_nn", mode, shape[-1], tf.float32, False)(
                tf.cast(x, tf.float32), tf.cast(dy, tf.float32))) for mode in modes}
            for mode in ("copy", *modes):
                moved = BYTES_PER_ELEMENT_MOVED[mode] * dtype.size * int(np.prod(shape))
                for variant in (["copy"] if mode == "copy" else variants):
                    for flag in jit:
                        try:
                            if mode == "copy":
                                fn, error = _copy(dtype, flag), 0.0
                                seconds = time_call(fn, [x, dy], repeats=repeats)
                            else:
                                fn = _compiled(variant, mode, shape[-1], dtype, flag)
                                seconds = time_call(fn, [x, dy], repeats=repeats)
                                pairs = zip(tf.nest.flatten(fn(x, dy))[:2], reference[mode][:2])
                                error = max(float(tf.reduce_max(tf.abs(tf.cast(a, tf.float32) - b)))
                                            for a, b in pairs)
                            results.append(Timing(variant, flag, mode, dtype_name, shape, seconds,
                                                  moved / seconds / 1e9, error))
                        except (tf.errors.OpError, TypeError, ValueError, NotImplementedError) as err:
                            status = f"unsupported: {type(err).__name__}: {str(err).splitlines()[0][:80]}"
                            results.append(Timing(variant, flag, mode, dtype_name, shape, float("nan"),
                                                  float("nan"), float("nan"), status))
    return results


