"""Normalization variants from the BN literature, as Keras pieces for ``build_mlp(norm_factory=...)``.

- :class:`NoisyShiftScale` (Santurkar et al. 2018, "noisy BN"): in training mode
  it multiplies every unit by a random scale and adds a random shift, both redrawn
  at every call (every training step) and shared by all examples of the batch;
  in inference mode it is the identity. Placed after BN, it makes the
  distribution that the next layer sees jump around from step to step.
- :func:`noisy_batch_norm`: a factory ``() -> BN followed by NoisyShiftScale``.
- :class:`RenormRamp` (Ioffe 2017, Batch Renormalization): the clipping bounds
  ``rmax`` (``rmin = 1/rmax``) and ``dmax`` as variables, ramped linearly from
  ``(1, 0)`` (plain BN) to their final values between two steps; its
  :meth:`~RenormRamp.factory` builds Keras ``BatchNormalization(renorm=True)``
  layers that read them, so updating the ramp never retraces a compiled step.

Inputs are ``(N, C)`` or ``(N, ..., C)``; the noise is per unit of the last axis.

Chapters: 7.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from .walk import walk_layers

__all__ = ["NoisyShiftScale", "noisy_batch_norm", "reseed_noise", "RenormRamp"]


class NoisyShiftScale(keras.layers.Layer):
    """``y = x * s + b`` in training mode, per unit of the last axis, redrawn every call.

    ``b ~ U(-max_shift, max_shift)`` and ``log s ~ U(-log max_scale, log max_scale)``,
    so the scale lies in ``[1/max_scale, max_scale]``. Inference mode: ``y = x``.
    """

    def __init__(self, max_shift: float = 1.0, max_scale: float = 2.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not max_shift >= 0:
            raise ValueError(f"max_shift must be >= 0, got {max_shift}")
        if not max_scale >= 1:
            raise ValueError(f"max_scale must be >= 1, got {max_scale}")
        self.max_shift, self.max_scale = float(max_shift), float(max_scale)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def reseed(self, seed: int) -> None:
        """Restart the noise sequence from ``seed``."""
        self.seed_generator.state.assign(np.array([int(seed), 0], dtype=self.seed_generator.state.dtype))

    def call(self, inputs, training=None):
        if not training:
            return inputs
        units = inputs.shape[-1]
        shift = keras.random.uniform((units,), -self.max_shift, self.max_shift, seed=self.seed_generator)
        log_limit = math.log(self.max_scale)
        log_scale = keras.random.uniform((units,), -log_limit, log_limit, seed=self.seed_generator)
        return inputs * keras.ops.exp(log_scale) + shift

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_shift": self.max_shift, "max_scale": self.max_scale, "seed": self.seed}


def noisy_batch_norm(max_shift: float = 1.0, max_scale: float = 2.0, seed: int = 0):
    """A ``norm_factory``: each call returns ``BatchNormalization -> NoisyShiftScale``.

    The k-th layer made by one factory gets noise seed ``seed * 1000 + k``.
    """
    count = [0]

    def factory():
        count[0] += 1
        return keras.Sequential([
            keras.layers.BatchNormalization(),
            NoisyShiftScale(max_shift, max_scale, seed=seed * 1000 + count[0]),
        ])

    return factory


def reseed_noise(model, seed: int) -> int:
    """Reseed every :class:`NoisyShiftScale` in ``model`` (k-th gets ``seed * 1000 + k``); return how many."""
    noisy = [layer for layer in walk_layers(model) if isinstance(layer, NoisyShiftScale)]
    for k, layer in enumerate(noisy, start=1):
        layer.reseed(seed * 1000 + k)
    return len(noisy)


class RenormRamp:
    """Batch-renorm clipping bounds that grow linearly with the training step.

    Before ``start`` the bounds are ``rmax = rmin = 1`` and ``dmax = 0``
    (exactly BN); after ``end`` they are ``rmax_final`` (``rmin = 1/rmax``) and
    ``dmax_final``. The paper's values are 3 and 5.
    """

    def __init__(self, start: int, end: int, rmax_final: float = 3.0, dmax_final: float = 5.0):
        import tensorflow as tf

        if not 0 <= start < end:
            raise ValueError(f"need 0 <= start < end, got start={start}, end={end}")
        if rmax_final < 1 or dmax_final < 0:
            raise ValueError("rmax_final must be >= 1 and dmax_final >= 0")
        self.start, self.end = int(start), int(end)
        self.rmax_final, self.dmax_final = float(rmax_final), float(dmax_final)
        dtype = keras.config.floatx()  # the dtype the layers will compute in
        self.rmax = tf.Variable(1.0, trainable=False, name="renorm_rmax", dtype=dtype)
        self.rmin = tf.Variable(1.0, trainable=False, name="renorm_rmin", dtype=dtype)
        self.dmax = tf.Variable(0.0, trainable=False, name="renorm_dmax", dtype=dtype)

    def fraction(self, step: int) -> float:
        """How far the ramp has gone at ``step``: 0 before ``start``, 1 after ``end``."""
        return float(np.clip((step - self.start) / (self.end - self.start), 0.0, 1.0))

    def update(self, step: int) -> tuple[float, float, float]:
        """Set the bounds for ``step``; return ``(rmin, rmax, dmax)``."""
        f = self.fraction(step)
        rmax = 1.0 + f * (self.rmax_final - 1.0)
        dmax = f * self.dmax_final
        self.rmax.assign(rmax)
        self.rmin.assign(1.0 / rmax)
        self.dmax.assign(dmax)
        return 1.0 / rmax, rmax, dmax

    def factory(self, **kwargs):
        """A ``norm_factory`` of ``BatchNormalization(renorm=True)`` layers clipped by this ramp."""
        clipping = {"rmax": self.rmax, "rmin": self.rmin, "dmax": self.dmax}
        return lambda: keras.layers.BatchNormalization(renorm=True, renorm_clipping=clipping, **kwargs)
