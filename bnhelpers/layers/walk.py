"""Find layers inside a model: the one walk over a Keras layer tree, and what counts as BN.

A *BN layer* is any layer with ``moving_mean`` and ``moving_variance`` weights:
``keras.layers.BatchNormalization`` (with or without ``renorm`` or ``synchronized``),
:class:`bnhelpers.layers.batch_norm.MomentsBatchNorm`,
:class:`bnhelpers.layers.ghost.GhostBatchNormalization`, and any layer of your own that
keeps its statistics under those names (duck typing: the tools work on all of them).

:func:`walk_layers` uses public attributes only: a model's ``layers`` and, for other
layers, the sub-layers they hold in public attributes (a wrapper's ``block``, a list of
layers). Keras keeps its own complete list in a private attribute; a sub-layer held only
under a name starting with ``_`` is therefore not found (keep sub-layers public).

Used by :mod:`bnhelpers.tools` (statistics, freezing, checks, folding) and
:func:`bnhelpers.layers.variants.reseed_noise`; chapters 5 to 8 through them.
"""

from __future__ import annotations

import collections
from typing import Iterator

import keras

__all__ = ["walk_layers", "is_batch_norm", "bn_layers"]


def _children(layer) -> list:
    if isinstance(layer, keras.Model):  # Sequential and functional models list their layers
        return list(layer.layers)
    children = []
    for name, value in vars(layer).items():
        if name.startswith("_"):
            continue
        values = value if isinstance(value, (list, tuple)) else \
            list(value.values()) if isinstance(value, dict) else [value]
        children += [v for v in values if isinstance(v, keras.layers.Layer)]
    return children


def walk_layers(model) -> Iterator[keras.layers.Layer]:
    """``model`` itself, then every layer inside it, each once (a shared layer too).

    The order is Keras's own (``Layer._flatten_layers``): ``model``'s layers in order,
    each followed by what it contains, a container's contents last to first.
    ``TypeError`` for something that is not a Keras layer or model.
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"expected a Keras model or layer, got {type(model).__name__}")
    yield model
    seen: set[int] = {id(model)}
    queue = collections.deque(_children(model))
    while queue:
        layer = queue.popleft()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer
        queue.extendleft(_children(layer))


def is_batch_norm(layer) -> bool:
    """True for a *built* BN layer (one that has ``moving_mean`` and ``moving_variance`` weights)."""
    return getattr(layer, "moving_mean", None) is not None and getattr(layer, "moving_variance", None) is not None


def bn_layers(model) -> list:
    """Every built BN layer inside ``model`` (or ``model`` itself), in :func:`walk_layers` order.

    Raises ``TypeError`` for something that is not a Keras layer or model and
    ``ValueError`` when it contains no built BN layer (build the model first,
    e.g. by calling it once or creating it with ``keras.Input``).
    """
    layers = [layer for layer in walk_layers(model) if is_batch_norm(layer)]
    if not layers:
        raise ValueError(
            f"{getattr(model, 'name', model)!r} has no built batch-normalization layer "
            "(a layer with moving_mean and moving_variance weights)")
    return layers
