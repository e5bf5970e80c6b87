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

:func:`layer_inputs_model` answers "what does this layer receive?" for layers of a
functional or Sequential model: it rebuilds the model's graph over the *same* layer
objects (public ``keras.models.clone_model`` with ``call_function``), inlining nested
Sequential and functional models, and returns a model whose outputs are the inputs of
the layers asked for, in the order the forward pass calls them.

Used by :mod:`bnhelpers.tools` (population, freezing, checks, folding) and
:func:`bnhelpers.layers.variants.reseed_noise`; chapters 5 to 8 use it through them.

Chapters: none directly.
"""

from __future__ import annotations

import collections
from typing import Iterator, NamedTuple

import keras

__all__ = ["walk_layers", "is_batch_norm", "bn_layers", "bn_axis", "LayerInputs", "layer_inputs_model"]


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
    each followed by what it contains, a container's contents last to first. (Keras also
    lists a Sequential model's ``InputLayer``, which ``Sequential.layers`` leaves out.)
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


class LayerInputs(NamedTuple):
    """What :func:`layer_inputs_model` returns.

    ``model``: a functional model over the same layer objects (the same weights) as the
    model it was made from, with inputs of the same structure; calling it returns a list
    whose ``i``-th entry is the input that ``layers[i]`` receives (then the model's own
    outputs, flattened, if asked for). Like any Keras model it returns a single output as
    a tensor, not as a one-element list (``keras.tree.flatten`` gives a list either way).
    ``layers``: the layers asked for, in the order the forward pass calls them.
    """

    model: keras.Model
    layers: list


class _InputOf(keras.layers.Layer):
    """Identity standing for "the input ``layer`` receives".

    It has ``layer``'s dtype policy and ``autocast``, so ``Layer.__call__`` converts its
    input exactly as it converts ``layer``'s. ``received_mask`` tells whether Keras passed
    it a mask (when it is called on a symbolic input).
    """

    def __init__(self, layer, **kwargs):
        super().__init__(dtype=layer.dtype_policy, autocast=layer.autocast, **kwargs)
        self.target = layer.name  # the name only: holding the layer would make it a sub-layer
        self.received_mask = False
        self.supports_masking = True  # no warning that the mask is dropped: the caller refuses it

    def call(self, inputs, mask=None):
        if mask is not None:
            self.received_mask = True
        return inputs


def bn_axis(layer, rank: int | None = None) -> int:
    """The one axis a BN layer keeps statistics for (``layer.axis``, an int or a one-element list).

    With ``rank`` (the number of dimensions of the layer's input) the axis is returned as a
    non-negative index, e.g. ``-1`` becomes ``3`` for NHWC images; without it, as the layer stores it.
    Raises ``ValueError`` for a layer normalized over several axes at once.
    """
    axis = getattr(layer, "axis", -1)
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise ValueError(f"{layer.name}: only a single channel axis is supported, got {axis}")
        axis = axis[0]
    return int(axis) if rank is None else int(axis) % rank


def _is_graph(layer) -> bool:
    """Whether Keras records ``layer``'s calls as a graph: a Sequential or functional model
    (only functional models have ``outputs``; a subclassed model has its own ``call``)."""
    return isinstance(layer, keras.Sequential) or (isinstance(layer, keras.Model) and hasattr(layer, "outputs"))


def _graph(model) -> keras.Model:
    """``model`` as a functional graph over its own layers, or ``ValueError`` when it has none."""
    if isinstance(model, keras.Sequential):  # Sequential: its layers called one after another
        try:
            spec = model.inputs[0]
        except (AttributeError, IndexError, ValueError) as err:
            raise ValueError(f"Sequential model {model.name!r} is not built: call it on data or start it "
                             "with keras.Input") from err
        inputs = keras.Input(batch_shape=(None, *spec.shape[1:]), dtype=spec.dtype, name=f"{model.name}_input")
        x = inputs
        for layer in model.layers:
            x = layer(x)
        return keras.Model(inputs, x, name=model.name)
    if not _is_graph(model):
        raise ValueError(
            f"{model.name!r} ({type(model).__name__}) is not a functional or Sequential model: Keras keeps no "
            "graph of the layer calls inside its call(), so the input of a layer in it cannot be read. Build the "
            "model with keras.Input and layer calls (keras.Model(inputs, outputs)) or as keras.Sequential")
    return model


def _trace(model, wanted: dict, taps: dict) -> tuple[keras.Model, list, int]:
    """Clone ``model``'s graph over the same layers, adding an ``_InputOf`` after the input of each
    call of a layer in ``wanted`` (``{id: layer}``). Returns ``(tap, called, n_outputs)``: ``tap``
    outputs the model's outputs (``n_outputs`` tensors), then the inputs of ``called``, in call
    order. ``taps`` caches the taps of nested models (one per model, however often it is called)."""
    graph = _graph(model)
    called, tapped = [], []

    def call_function(layer, *args, **kwargs):
        if isinstance(layer, keras.layers.Layer) and id(layer) not in wanted and any(
                id(inner) in wanted for inner in walk_layers(layer)):
            # a nested model holding tapped layers: its own tap runs in its place (it is inlined)
            if id(layer) not in taps:
                taps[id(layer)] = _trace(layer, wanted, taps)
            inner_tap, inner_called, n_outputs = taps[id(layer)]
            results = keras.tree.flatten(inner_tap(*args, **kwargs))
            called.extend(inner_called)
            tapped.extend(results[n_outputs:])
            return results[:n_outputs]
        if id(layer) in wanted:
            x = args[0] if args else kwargs["inputs"]
            probe = _InputOf(layer, name=f"input_of_{layer.name}_{len(tapped)}")
            tapped.append(probe(x))
            if probe.received_mask:
                raise ValueError(f"layer {layer.name!r} receives a masked input; masked inputs are not supported")
            called.append(layer)
        return layer(*args, **kwargs)

    traced = keras.models.clone_model(graph, clone_function=lambda layer: layer, call_function=call_function)
    outputs = keras.tree.flatten(traced.outputs)
    tap = keras.Model(traced.input, [*outputs, *tapped], name=f"{model.name}_layer_inputs")
    return tap, called, len(outputs)


def layer_inputs_model(model, layers, *, with_outputs: bool = False) -> LayerInputs:
    """A model that returns what each of ``layers`` receives in ``model``'s forward pass.

    ``model``: a functional or Sequential Keras model; ``layers``: layers inside it
    (e.g. :func:`bn_layers`). The model's graph is rebuilt with
    ``keras.models.clone_model(model, clone_function=lambda layer: layer,
    call_function=...)``: the same layer objects (the same weights) are called in the
    same order, and the first positional input of each call of one of ``layers`` becomes
    an output. Nested Sequential and functional models that hold some of ``layers`` are
    inlined the same way (``clone_model``'s ``recursive=True`` does not do this: it
    rebuilds a nested model on inputs of its own and does not pass ``call_function``
    to a nested Sequential model).

    Calling ``result.model(x, training=...)`` computes the inputs exactly as
    ``model(x, training=...)`` does (the same operations, each input converted to the
    layer's dtype as ``Layer.__call__`` does). With ``with_outputs=True`` the model's own
    outputs (flattened) follow, so that every layer runs as in ``model(x)`` (training-mode
    side effects included). Building it adds call records (inbound nodes) to the layers
    but changes no weight.

    Raises ``TypeError`` when ``model`` is not a Keras model, and ``ValueError`` naming the
    layer when one of ``layers`` cannot be read: it is held by a layer whose ``call()``
    Keras does not record as a graph (a subclassed model or a custom layer that calls
    it, such as ``InferenceMode(block)``), it is called more than once (a shared layer:
    its calls would be mixed), it receives a masked input, or the forward pass does not
    call it.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"expected a functional or Sequential Keras model, got {type(model).__name__}")
    layers = list(layers)
    for layer in layers:
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(f"layers must be Keras layers, got {type(layer).__name__}")
    wanted = {id(layer): layer for layer in layers}
    for holder in walk_layers(model):
        if holder is model or _is_graph(holder) or isinstance(holder, keras.layers.InputLayer):
            continue  # graphs are inlined; a model that is not one is refused by _trace
        inner = next((inner for inner in list(walk_layers(holder))[1:] if id(inner) in wanted), None)
        if inner is not None:
            raise ValueError(
                f"layer {inner.name!r} is held by {holder.name!r} ({type(holder).__name__}), which calls it "
                "inside its own call(); Keras keeps no graph of such calls, so its input cannot be read. Call "
                "the layer (or the functional/Sequential model holding it) directly in a functional or "
                "Sequential model")
    tap, called, n_outputs = _trace(model, wanted, {})
    counts = collections.Counter(id(layer) for layer in called)
    for key, layer in wanted.items():
        if counts[key] == 0:
            raise ValueError(f"layer {layer.name!r} is not called by the forward pass of {model.name!r}")
        if counts[key] > 1:
            raise ValueError(f"layer {layer.name!r} is called {counts[key]} times by the forward pass of "
                             f"{model.name!r} (a shared layer); its inputs cannot be told apart. Use one "
                             "layer per call")
    outputs = keras.tree.flatten(tap.outputs)
    kept = outputs[n_outputs:] + (outputs[:n_outputs] if with_outputs else [])
    return LayerInputs(keras.Model(tap.input, kept, name=tap.name), called)
