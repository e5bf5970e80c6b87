"""Input checks shared by every helper: arrays and axes, momentum, epsilon, counts.

Used by every module of the package (chapters meet it through the errors it raises, e.g. chapter 1's
batch of one).

Conventions: ``axes`` are the axes that are *reduced* (averaged over) when the
statistics are computed. ``None`` means "every axis but the last", i.e. per
feature for dense ``(N, C)`` inputs and per channel for NHWC images
``(N, H, W, C)``. Parameters (gamma, beta, mean, variance) have the shape of
the axes that are *kept*, in order: ``(C,)`` in both default cases.

Chapters: none directly.
"""

from __future__ import annotations

import warnings
from typing import Iterable, Sequence

import numpy as np


__all__ = ["BatchSizeOneWarning", "dtype_of", "check_float", "check_momentum", "check_epsilon",
           "check_positive_int", "check_widths", "normalize_axes", "param_shape", "broadcast_shape", "check_batch"]


class BatchSizeOneWarning(UserWarning):
    """Training-mode BN over a single value per feature: the output is beta."""


def dtype_of(x) -> np.dtype:
    """NumPy dtype of a NumPy array, a TensorFlow tensor/variable or a list."""
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return np.asarray(x).dtype
    as_numpy = getattr(dtype, "as_numpy_dtype", None)  # tf.DType
    return np.dtype(as_numpy if as_numpy is not None else dtype)


def check_float(x, name: str = "x") -> None:
    """Raise ``TypeError`` unless ``x`` holds floating-point numbers."""
    dtype = dtype_of(x)
    if dtype.kind != "f" and dtype.name != "bfloat16":
        raise TypeError(
            f"{name} must be a floating-point array, got dtype {dtype.name}; "
            f"cast it first, e.g. {name}.astype('float32')"
        )


def check_momentum(momentum, name: str = "momentum") -> float:
    """Return ``momentum`` as a float; ``TypeError`` unless a number, ``ValueError`` outside [0, 1].

    Keras's convention throughout the package: the weight of the *old* average
    (see :mod:`bnhelpers.core.moving_average`). 1 is allowed (the average never
    changes); functions for which it is meaningless reject it themselves.
    """
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {momentum!r}")
    if not 0.0 <= float(momentum) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {momentum}")
    return float(momentum)


def check_epsilon(epsilon, name: str = "epsilon") -> float:
    """Return ``epsilon`` as a float; ``ValueError`` unless a finite number >= 0.

    The functions of :mod:`bnhelpers.core` accept 0 (chapter 1 studies it); Keras
    layers, and the layers of :mod:`bnhelpers.layers`, need it > 0.
    """
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {epsilon!r}")
    if not (np.isfinite(epsilon) and epsilon >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {epsilon}")
    return float(epsilon)


def check_positive_int(**values) -> None:
    """``ValueError`` naming the first argument that is not an int >= 1 (bools are not ints here)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_widths(widths) -> tuple[int, ...]:
    """The hidden-layer widths of a network as a tuple of ints; ``ValueError`` unless a non-empty list of ints >= 1."""
    try:
        values = tuple(widths)
    except TypeError:
        raise ValueError(f"widths must be a list of positive ints, got {widths!r}") from None
    if not values or any(isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1 for w in values):
        raise ValueError(f"widths must be a non-empty list of positive ints, got {widths!r}")
    return tuple(int(w) for w in values)


def normalize_axes(axes: int | Iterable[int] | None, ndim: int) -> tuple[int, ...]:
    """Return the reduction axes as sorted non-negative ints, checked against ``ndim``."""
    if ndim < 2:
        raise ValueError(
            f"batch normalization needs a batch axis and at least one feature "
            f"axis: expected rank >= 2, got rank {ndim}"
        )
    if axes is None:
        return tuple(range(ndim - 1))
    if isinstance(axes, (int, np.integer)):
        axes = (int(axes),)
    result = []
    for axis in axes:
        if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
            raise TypeError(f"axes must be integers, got {axis!r}")
        if not -ndim <= axis < ndim:
            raise ValueError(f"axis {axis} is out of range for a rank-{ndim} input")
        result.append(int(axis) % ndim)
    if len(set(result)) != len(result):
        raise ValueError(f"axes contain a repeated axis: {tuple(axes)}")
    if 0 not in result:
        raise ValueError(
            f"the batch axis 0 must be among the reduced axes, got {tuple(axes)}"
        )
    return tuple(sorted(result))


def param_shape(shape: Sequence[int], axes: Sequence[int]) -> tuple[int, ...]:
    """Shape of gamma, beta and the statistics: the sizes of the kept axes."""
    return tuple(int(s) for i, s in enumerate(shape) if i not in axes)


def broadcast_shape(shape: Sequence[int], axes: Sequence[int]) -> tuple[int, ...]:
    """Shape that broadcasts a parameter against ``x`` (reduced axes become 1)."""
    return tuple(1 if i in axes else int(s) for i, s in enumerate(shape))


def check_batch(
    x,
    axes: int | Iterable[int] | None,
    *,
    training: bool,
    params: dict | None = None,
) -> tuple[int, ...]:
    """Validate ``x`` and the named parameters; return the normalized axes.

    Raises ``TypeError`` for a non-float ``x``, ``ValueError`` for a wrong
    rank, an axis out of range, an empty batch or a parameter whose shape is
    not :func:`param_shape`. Warns with :class:`BatchSizeOneWarning` when
    training mode averages over a single value per feature.
    """
    check_float(x)
    shape = tuple(x.shape)
    if any(s is None for s in shape):
        raise ValueError(f"x must have a fully known shape, got {shape}")
    axes = normalize_axes(axes, len(shape))
    if any(int(s) == 0 for s in shape):
        raise ValueError(f"empty batch: x has shape {shape}")
    expected = param_shape(shape, axes)
    for name, value in (params or {}).items():
        if value is None:
            continue
        got = tuple(np.shape(value))
        if got != expected:
            raise ValueError(
                f"{name} has shape {got}, expected {expected} "
                f"(the sizes of the axes kept when reducing over {axes})"
            )
    count = int(np.prod([shape[i] for i in axes]))
    if training and count == 1:
        warnings.warn(
            "training-mode batch normalization over a single value per feature: "
            "the mean equals the input, so the output will be beta and the "
            "gradient with respect to x will be zero",
            BatchSizeOneWarning,
            stacklevel=3,
        )
    return axes
