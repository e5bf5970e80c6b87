"""Conventions of BN implementations (Keras 3, tf-keras, PyTorch) and converters between them.

Momentum. Keras (3 and tf-keras) keeps ``momentum`` of the *old* average::

    moving = momentum * moving + (1 - momentum) * batch_statistic      # Keras, default 0.99

PyTorch's ``momentum`` is the weight of the *new* batch (documented)::

    running = (1 - momentum) * running + momentum * batch_statistic    # PyTorch, default 0.1

so ``keras_momentum = 1 - torch_momentum``.

Variance. Every implementation *normalizes* with the biased batch variance
(divide by ``m``, the number of values per channel in the batch: ``N`` for
``(N, C)``, ``N*H*W`` for images). What goes into the moving average differs:
the biased variance in Keras 3 and in tf-keras's unfused path, the unbiased one
(divide by ``m - 1``) in tf-keras's fused path (rank-4 input, the default) and in
PyTorch. :func:`biased_to_unbiased` and :func:`unbiased_to_biased` convert one
batch statistic, and also a moving average of them when every batch had the same
``m``, *except* for the share the initial value still holds (see
:func:`bnhelpers.core.moving_average.initial_weight`).

The moving averages themselves (one update in either convention, how fast they
forget) live in :mod:`bnhelpers.core.moving_average`; what a given Keras version
actually does is measured by :mod:`bnhelpers.tools.keras_versions`.

Pure NumPy, no TensorFlow.

Chapters: 9.
"""

from __future__ import annotations

import numpy as np

from .validation import check_momentum

__all__ = [
    "KERAS_DEFAULTS", "TORCH_DEFAULTS", "keras_to_torch_momentum", "torch_to_keras_momentum",
    "biased_to_unbiased", "unbiased_to_biased", "keras_to_torch_config", "torch_to_keras_config",
    "channel_axis", "reduction_axes",
]

KERAS_DEFAULTS = {"momentum": 0.99, "epsilon": 1e-3, "axis": -1, "moving_mean": 0.0, "moving_variance": 1.0}
# Documented defaults of torch.nn.BatchNorm1d/2d/3d (PyTorch is not a dependency of this book).
TORCH_DEFAULTS = {"momentum": 0.1, "eps": 1e-5, "channel_dim": 1, "running_mean": 0.0, "running_var": 1.0}

def keras_to_torch_momentum(momentum: float) -> float:
    """Keras ``momentum`` (weight of the old average) -> PyTorch ``momentum`` (weight of the new batch).

    ``1 - momentum``, rounded to 12 decimals so that 0.99 gives 0.01, not 0.010000000000000009.
    """
    return round(1.0 - check_momentum(momentum), 12)


def torch_to_keras_momentum(momentum: float) -> float:
    """PyTorch ``momentum`` -> Keras ``momentum``; the map is its own inverse (up to the rounding)."""
    return round(1.0 - check_momentum(momentum), 12)


def _check_count(count):
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
        raise TypeError(f"count must be an int (values per channel in a batch), got {count!r}")
    if count < 2:
        raise ValueError(f"count must be >= 2: the unbiased variance of {count} value(s) is undefined")
    return int(count)


def biased_to_unbiased(variance, count: int):
    """Multiply by ``m / (m - 1)``; ``count`` = m, the values per channel in one batch."""
    m = _check_count(count)
    return np.asarray(variance, dtype=np.float64) * (m / (m - 1))


def unbiased_to_biased(variance, count: int):
    """Multiply by ``(m - 1) / m``; the inverse of :func:`biased_to_unbiased`."""
    m = _check_count(count)
    return np.asarray(variance, dtype=np.float64) * ((m - 1) / m)


def keras_to_torch_config(config: dict) -> dict:
    """Translate ``momentum``/``epsilon`` of a Keras BN config into PyTorch's ``momentum``/``eps``.

    The channel axis needs no argument in PyTorch: its BN layers always take
    channels at dimension 1 (``(N, C)`` or ``(N, C, H, W)``), so channels-last
    images must be transposed to channels-first.
    """
    unknown = set(config) - {"momentum", "epsilon"}
    if unknown:
        raise ValueError(f"unsupported keys {sorted(unknown)}; expected momentum, epsilon")
    merged = {"momentum": KERAS_DEFAULTS["momentum"], "epsilon": KERAS_DEFAULTS["epsilon"], **config}
    if merged["epsilon"] <= 0:
        raise ValueError(f"epsilon must be > 0, got {merged['epsilon']}")
    return {"momentum": keras_to_torch_momentum(merged["momentum"]), "eps": float(merged["epsilon"])}


def torch_to_keras_config(config: dict, data_format: str = "channels_last") -> dict:
    """Translate PyTorch's ``momentum``/``eps`` into Keras arguments for data in ``data_format``."""
    unknown = set(config) - {"momentum", "eps"}
    if unknown:
        raise ValueError(f"unsupported keys {sorted(unknown)}; expected momentum, eps")
    merged = {"momentum": TORCH_DEFAULTS["momentum"], "eps": TORCH_DEFAULTS["eps"], **config}
    if merged["momentum"] is None:
        raise ValueError("momentum=None (PyTorch's cumulative average) has no Keras equivalent; "
                         "see bnhelpers.tools.population.precise_bn")
    if merged["eps"] <= 0:
        raise ValueError(f"eps must be > 0, got {merged['eps']}")
    return {"momentum": torch_to_keras_momentum(merged["momentum"]), "epsilon": float(merged["eps"]),
            "axis": channel_axis(data_format)}


def channel_axis(data_format: str) -> int:
    """The Keras ``axis`` argument for ``"channels_last"`` (-1, NHWC) or ``"channels_first"`` (1, NCHW)."""
    axes = {"channels_last": -1, "channels_first": 1}
    if data_format not in axes:
        raise ValueError(f"data_format must be one of {sorted(axes)}, got {data_format!r}")
    return axes[data_format]


def reduction_axes(rank: int, data_format: str = "channels_last") -> tuple[int, ...]:
    """The axes BN averages over: all but the channel axis, e.g. ``(0, 1, 2)`` for NHWC, ``(0, 2, 3)`` for NCHW."""
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 2:
        raise ValueError(f"rank must be an int >= 2, got {rank!r}")
    keep = channel_axis(data_format) % rank
    return tuple(i for i in range(rank) if i != keep)
