"""Which examples each training step sees: seeded shuffled orders, one implementation for every loop.

Conventions: data sets hold ``n`` examples indexed ``0..n-1``; an *epoch order* is a
permutation of them drawn from ``numpy.random.default_rng(seed)``, one per epoch, so two
runs with the same seed see the same examples in the same order.

- :func:`epoch_orders`: the stream of permutations itself;
- :func:`epoch_batches`: per epoch, the consecutive batches of its permutation (the last one
  shorter, or dropped with ``drop_remainder``), for loops that act at epoch ends;
- :func:`shuffled_schedule`: a ``(steps, batch_size)`` int32 array, row ``t`` the indices of
  step ``t``: epochs with the remainder dropped, or (``carry_over=True``) epochs laid end
  to end, so that a batch may straddle two epochs and no example is left out;
- :func:`class_grouped_schedule`: non-i.i.d. batches drawn from a few classes each
  (Ioffe 2017's setting).

Every loop of :mod:`bnhelpers.training` (``loop``, ``compiled``, ``regression``, ``legacy``)
takes its batches from here.

Chapters: 5, 6, 7, 10, 11.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ..core.validation import check_positive_int

__all__ = ["epoch_orders", "epoch_batches", "shuffled_schedule", "class_grouped_schedule"]


def epoch_orders(n: int, seed: int = 0) -> Iterator[np.ndarray]:
    """An endless stream of permutations of ``range(n)``, one per epoch, drawn from ``seed``."""
    check_positive_int(n=n)
    rng = np.random.default_rng(seed)
    while True:
        yield rng.permutation(n)


def epoch_batches(n: int, batch_size: int, *, epochs: int, seed: int = 0,
                  drop_remainder: bool = False) -> Iterator[list[np.ndarray]]:
    """For each of ``epochs`` epochs, the list of its batches' index arrays, in order.

    Batch ``k`` of an epoch holds positions ``k * batch_size ...`` of that epoch's order;
    the last is shorter when ``batch_size`` does not divide ``n``, or dropped with
    ``drop_remainder=True``.
    """
    check_positive_int(n=n, batch_size=batch_size, epochs=epochs)
    stop = n - n % batch_size if drop_remainder else n
    orders = epoch_orders(n, seed)
    for _ in range(epochs):
        order = next(orders)
        yield [order[start:start + batch_size] for start in range(0, stop, batch_size)]


def shuffled_schedule(n: int, batch_size: int, steps: int, seed: int = 0, *,
                      carry_over: bool = False) -> np.ndarray:
    """``(steps, batch_size)`` int32 indices: successive epochs of seeded permutations of ``range(n)``.

    By default each epoch contributes ``n // batch_size`` full batches (the remainder is
    dropped). ``carry_over=True`` lays the epochs end to end and cuts the stream into
    batches, so the examples left at the end of one epoch open the next batch.
    """
    check_positive_int(n=n, batch_size=batch_size, steps=steps)
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} is larger than the data set ({n})")
    orders = epoch_orders(n, seed)
    if carry_over:
        needed = -(-steps * batch_size // n)
        stream = np.concatenate([next(orders) for _ in range(needed)])
        return stream[:steps * batch_size].reshape(steps, batch_size).astype(np.int32)
    per_epoch = n // batch_size
    epochs = -(-steps // per_epoch)
    rows = [next(orders)[: per_epoch * batch_size].reshape(per_epoch, batch_size) for _ in range(epochs)]
    return np.concatenate(rows)[:steps].astype(np.int32)


def class_grouped_schedule(labels, batch_size: int, classes_per_batch: int, steps: int,
                           seed: int = 0) -> np.ndarray:
    """``(steps, batch_size)`` indices of non-i.i.d. batches (Ioffe 2017's setting).

    Every batch picks ``classes_per_batch`` distinct classes at random and takes
    ``batch_size // classes_per_batch`` random examples of each (without
    replacement within a batch), so a batch holds only a few classes.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    check_positive_int(batch_size=batch_size, classes_per_batch=classes_per_batch, steps=steps)
    classes = np.unique(labels)
    if classes_per_batch > len(classes):
        raise ValueError(f"classes_per_batch {classes_per_batch} exceeds the {len(classes)} classes")
    if batch_size % classes_per_batch:
        raise ValueError(f"batch_size {batch_size} is not a multiple of classes_per_batch {classes_per_batch}")
    per_class = batch_size // classes_per_batch
    members = [np.flatnonzero(labels == c) for c in classes]
    if min(len(m) for m in members) < per_class:
        raise ValueError(f"some class has fewer than {per_class} examples")
    rng = np.random.default_rng(seed)
    out = np.empty((steps, batch_size), dtype=np.int32)
    for t in range(steps):
        chosen = rng.choice(len(classes), size=classes_per_batch, replace=False)
        out[t] = np.concatenate([rng.choice(members[c], size=per_class, replace=False) for c in chosen])
    return out
