"""Fold inference-mode batch normalization into the ``Dense`` or ``Conv2D`` layer before it.

In inference mode BN is one affine map per channel (Ioffe & Szegedy 2015, Algorithm 2;
:func:`bnhelpers.core.reference.affine_form`)::

    bn(z) = scale * z + shift,   scale = gamma / sqrt(moving_variance + epsilon),
                                 shift = beta - moving_mean * scale

If the layer before it computes ``z = x @ W + b`` (``Dense``) or ``z = conv(x, W) + b``
(``Conv2D``), every output channel ``c`` is linear in the kernel slice ``W[..., c]``, so ::

    bn(z) = x @ (W * scale) + (b * scale + shift)       # the same for conv

The pair becomes one layer: its kernel is scaled along the **last kernel axis** (the
output channels, for ``Dense`` ``(in, out)`` and ``Conv2D`` ``(kh, kw, in, out)`` alike)
and its bias is ``b * scale + shift`` (``b = 0`` when the layer had ``use_bias=False``;
the folded layer always has a bias). The arithmetic runs in float64 and is cast back to
the variable dtype.

:func:`fold_batch_norm` folds every BN of a Sequential or functional Keras model and
returns a new model without BN layers; the original is left untouched. The new model
equals the original **in inference mode** (``training=False``, ``predict``). A BN it cannot
fold raises ``ValueError`` naming the layer: BN after any other layer (or after an
activation), BN whose input feeds another layer too, BN on a non-channel axis, a
channels_first convolution, a shared BN layer, BN inside a nested model, a model
not built from ``keras.Input``. Every layer that :func:`bnhelpers.layers.walk.is_batch_norm`
recognizes is folded: ``keras.layers.BatchNormalization``, ``MomentsBatchNorm`` and
``GhostBatchNormalization`` (all three are the same affine map in inference mode).

Chapters: 8.
"""

from __future__ import annotations

import keras
import numpy as np

from ..core.reference import affine_form
from ..layers.walk import is_batch_norm, walk_layers

__all__ = ["FOLDABLE_TYPES", "bn_parameters", "fold_into_kernel", "foldable_pairs", "fold_batch_norm"]

FOLDABLE_TYPES = (keras.layers.Dense, keras.layers.Conv2D)


def bn_parameters(bn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """``(gamma, beta, moving_mean, moving_variance, epsilon)`` of a built BN layer, in float64.

    A missing ``gamma`` (``scale=False``) is ones, a missing ``beta`` (``center=False``) zeros.
    """
    if not (isinstance(bn, keras.layers.Layer) and hasattr(bn, "moving_mean") and hasattr(bn, "epsilon")):
        raise TypeError(f"expected a batch-normalization layer, got {type(bn).__name__}")
    if not is_batch_norm(bn):
        raise ValueError(f"BN layer {bn.name!r} is not built: call the model on data first")
    mean = np.asarray(bn.moving_mean.numpy(), dtype=np.float64)
    variance = np.asarray(bn.moving_variance.numpy(), dtype=np.float64)
    gamma = getattr(bn, "gamma", None)
    beta = getattr(bn, "beta", None)
    gamma = np.ones_like(mean) if gamma is None else np.asarray(gamma.numpy(), dtype=np.float64)
    beta = np.zeros_like(mean) if beta is None else np.asarray(beta.numpy(), dtype=np.float64)
    return gamma, beta, mean, variance, float(bn.epsilon)


def fold_into_kernel(kernel, bias, gamma, beta, mean, variance, epsilon: float = 1e-3):
    """Kernel and bias of the layer that equals "layer, then inference-mode BN".

    ``kernel``: shape ``(..., C)`` with the output channels last; ``bias``: ``(C,)`` or
    ``None`` (no bias); BN parameters: ``(C,)``. Returns ``(kernel, bias)`` in float64.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim < 2:
        raise ValueError(f"kernel must have rank >= 2 with output channels last, got shape {kernel.shape}")
    channels = kernel.shape[-1]
    scale, shift = affine_form(gamma, beta, mean, variance, epsilon=epsilon)
    if scale.shape != (channels,):
        raise ValueError(f"BN parameters have shape {scale.shape}, the kernel has {channels} output channels")
    bias = np.zeros(channels) if bias is None else np.asarray(bias, dtype=np.float64)
    if bias.shape != (channels,):
        raise ValueError(f"bias has shape {bias.shape}, expected ({channels},)")
    return kernel * scale, bias * scale + shift


def _functional_view(model):
    """The model as a functional graph over the same layers (Sequential models are wrapped)."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"expected a keras.Model, got {type(model).__name__}")
    try:
        if isinstance(model, keras.Sequential):  # one input, one output
            return keras.Model(model.inputs[0], model.outputs[0], name=model.name)
        model.input  # noqa: B018 -- raises for models without a functional graph
    except (AttributeError, ValueError) as err:
        raise ValueError(f"model {model.name!r} has no symbolic inputs: build it from keras.Input "
                         "(subclassed models cannot be folded automatically)") from err
    return model


def _contains_bn(layer) -> bool:
    return any(is_batch_norm(inner) for inner in walk_layers(layer))


def _trace_calls(graph):
    """Every layer call of ``graph``, in order: ``(layer, input tensors, output tensors)``.

    Recorded while cloning the graph (only public Keras API), so a layer called twice
    appears twice. Also returns the model's output tensors of the traced copy.
    """
    originals = {}
    calls = []

    def clone_function(layer):
        new = layer.__class__.from_config(layer.get_config())
        originals[id(new)] = layer
        return new

    def call_function(layer, *args, **kwargs):
        output = layer(*args, **kwargs)
        calls.append((originals[id(layer)], keras.tree.flatten((args, kwargs)), keras.tree.flatten(output)))
        return output

    traced = keras.models.clone_model(graph, clone_function=clone_function, call_function=call_function)
    return calls, keras.tree.flatten(traced.outputs)


def foldable_pairs(model) -> list[tuple[keras.layers.Layer, keras.layers.Layer]]:
    """``[(producer, bn), ...]`` for every BN of ``model``; ``ValueError`` if one cannot be folded."""
    graph = _functional_view(model)
    for layer in graph.layers:
        if isinstance(layer, keras.Model) and _contains_bn(layer):
            raise ValueError(f"nested model {layer.name!r} contains BN layers; fold it on its own "
                             "first and build the outer model from the folded one")
    calls, outputs = _trace_calls(graph)
    n_calls, producer_of, uses = {}, {}, {}
    for layer, inputs, produced in calls:
        n_calls[id(layer)] = n_calls.get(id(layer), 0) + 1
        for tensor in inputs:
            uses[id(tensor)] = uses.get(id(tensor), 0) + 1
        for tensor in produced:
            producer_of[id(tensor)] = layer
    for tensor in outputs:
        uses[id(tensor)] = uses.get(id(tensor), 0) + 1

    pairs = []
    for bn, inputs, _ in calls:
        if not is_batch_norm(bn):
            continue
        where = f"BN layer {bn.name!r}"
        bn_input = inputs[0]
        producer = producer_of.get(id(bn_input))
        for layer in (bn, producer):
            if layer is not None and n_calls[id(layer)] > 1:
                raise ValueError(f"layer {layer.name!r} is shared (called more than once); folding "
                                 "needs every BN and the layer before it to be called exactly once")
        if producer is None:
            raise ValueError(f"{where} does not follow a Dense or Conv2D layer (its input is a model "
                             "input); it cannot be folded")
        if not isinstance(producer, FOLDABLE_TYPES):
            raise ValueError(f"{where} follows {type(producer).__name__} {producer.name!r}; only BN "
                             "directly after Dense or Conv2D can be folded into it")
        activation = producer.get_config().get("activation", "linear")
        if activation not in ("linear", None):
            raise ValueError(f"{where} follows {producer.name!r}, which applies activation "
                             f"{activation!r} before BN; BN can be folded only into a linear layer")
        if getattr(producer, "lora_enabled", False) or getattr(producer, "quantization_mode", None):
            raise ValueError(f"{where} follows {producer.name!r}, which uses LoRA or quantization")
        if uses[id(bn_input)] != 1:
            raise ValueError(f"{where}: the output of {producer.name!r} also feeds another layer or is a "
                             "model output; folding would change that other use")
        if getattr(producer, "data_format", "channels_last") != "channels_last":
            raise ValueError(f"{where} follows {producer.name!r}, which is channels_first; only "
                             "channels-last (NHWC) convolutions are supported")
        rank = len(bn_input.shape)
        axes = bn.axis if isinstance(bn.axis, (list, tuple)) else [bn.axis]
        if [a % rank for a in axes] != [rank - 1]:
            raise ValueError(f"{where} normalizes axis {bn.axis} of a rank-{rank} input, but the channels "
                             f"of {producer.name!r} are on the last axis; only per-channel BN can be folded")
        pairs.append((producer, bn))
    return pairs


def fold_batch_norm(model, name: str | None = None) -> keras.Model:
    """A new functional model in which every BN is folded into the Dense/Conv2D before it.

    Other layers are cloned with their weights copied, so the result shares nothing with
    ``model``. Its inference-mode outputs equal ``model``'s up to float round-off.
    """
    pairs = foldable_pairs(model)
    graph = _functional_view(model)
    fold_into = {id(producer): bn for producer, bn in pairs}
    folded_bns = {id(bn) for _, bn in pairs}
    clones: dict[int, keras.layers.Layer] = {}
    placeholders: set[int] = set()

    def clone_function(layer):
        config = layer.get_config()
        if id(layer) in folded_bns:
            new = keras.layers.Identity(name=layer.name)  # placeholder, never called
            placeholders.add(id(new))
        else:
            if id(layer) in fold_into:
                config["use_bias"] = True
            new = layer.__class__.from_config(config)
        clones[id(layer)] = new
        return new

    def call_function(layer, *args, **kwargs):
        return args[0] if id(layer) in placeholders else layer(*args, **kwargs)

    cloned = keras.models.clone_model(graph, clone_function=clone_function, call_function=call_function)
    for layer in graph.layers:
        new = clones.get(id(layer))
        if new is None or id(layer) in folded_bns:
            continue
        if id(layer) in fold_into:
            weights = layer.get_weights()
            kernel, bias = weights[0], (weights[1] if layer.use_bias else None)
            kernel, bias = fold_into_kernel(kernel, bias, *bn_parameters(fold_into[id(layer)]))
            dtype = layer.kernel.dtype
            new.set_weights([kernel.astype(dtype), bias.astype(dtype)])
        else:
            new.set_weights(layer.get_weights())
    return keras.Model(cloned.input, cloned.output, name=name or f"{model.name}_folded")
