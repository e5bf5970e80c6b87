"""Data sets that ship with the book: nothing is downloaded.

- :func:`load_digits`: scikit-learn's bundled 8x8 handwritten digits (1,797
  images), a fixed stratified split, pixels scaled from 0..16 to [0, 1].
- :func:`quadratic_regression`: the ``y = x^2 - 5 + noise`` of Morvan Zhou's BN tutorial (chapter 4).
- :func:`shifted_gaussian`: the 1-D "is x above its centre" task of a Stack Overflow question (chapter 5).
- :func:`random_images`: NHWC float32 noise images.
- :func:`padded_sequences`: variable-length sequences of Gaussian tokens, zero-padded at the end,
  ``(batch, time, features)``, with their lengths (chapter 10, LayerNorm against BN).
All return float32 features; labels are int64 class ids or float32 targets.

Chapters: 1, 2, 3, 4, 5, 6, 7, 8, 10, 11.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Split", "load_digits", "quadratic_regression", "shifted_gaussian", "random_images", "padded_sequences"]


@dataclass(frozen=True)
class Split:
    """Train/test arrays: ``x_*`` float32, ``y_*`` int64 labels 0..9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits(test_size: float = 0.25, seed: int = 0, images: bool = False) -> Split:
    """The digits, split stratified by class with ``seed``.

    ``images=False``: ``x`` has shape ``(N, 64)``; ``images=True``: ``(N, 8, 8, 1)`` (NHWC).
    """
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y)
    if images:
        x_train, x_test = x_train.reshape(-1, 8, 8, 1), x_test.reshape(-1, 8, 8, 1)
    return Split(x_train, y_train, x_test, y_test)


def quadratic_regression(n: int = 500, noise_std: float = 8.0, seed: int = 1,
                         low: float = -7.0, high: float = 10.0):
    """``x`` evenly spaced on [low, high] and ``y = x^2 - 5 + N(0, noise_std^2)``; both ``(n, 1)``."""
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    rng = np.random.default_rng(seed)
    x = np.linspace(low, high, n)[:, None]
    y = x**2 - 5.0 + rng.normal(0.0, noise_std, size=x.shape)
    return x.astype(np.float32), y.astype(np.float32)


def shifted_gaussian(n: int = 1000, shift: float = 0.0, seed: int = 0):
    """``x ~ N(shift, 1)`` of shape ``(n, 1)`` and label ``y = 1[x > shift]`` (float32, ``(n, 1)``)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1)) + shift
    y = (x > shift).astype(np.float32)
    return x.astype(np.float32), y


def random_images(n: int, height: int, width: int, channels: int, seed: int = 0,
                  mean: float = 0.0, std: float = 1.0) -> np.ndarray:
    """Gaussian noise images, NHWC ``(n, height, width, channels)`` float32."""
    dims = (n, height, width, channels)
    if any(int(d) < 1 for d in dims):
        raise ValueError(f"every dimension must be >= 1, got {dims}")
    rng = np.random.default_rng(seed)
    return (mean + std * rng.standard_normal(dims)).astype(np.float32)


def padded_sequences(n: int, max_len: int, features: int, *, min_len: int = 1, seed: int = 0,
                     mean: float = 0.0, std: float = 1.0):
    """``n`` sequences of ``N(mean, std^2)`` tokens, zero-padded at the end to ``max_len`` time steps.

    Each length is drawn uniformly from ``min_len..max_len``. Returns ``x``, float32
    ``(n, max_len, features)`` (batch, time, features; every step at or after a
    sequence's length is exactly 0), and ``lengths``, int64 ``(n,)``. Pad further with
    ``np.pad(x, ((0, 0), (0, extra), (0, 0)))``.
    """
    if n < 1 or features < 1:
        raise ValueError(f"n and features must be >= 1, got n={n}, features={features}")
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_len, max_len + 1, size=n).astype(np.int64)
    tokens = mean + std * rng.standard_normal((n, max_len, features))
    mask = np.arange(max_len)[None, :] < lengths[:, None]
    return (tokens * mask[:, :, None]).astype(np.float32), lengths
