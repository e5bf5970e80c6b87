"""Convolutional builders for the 8x8x1 digits: a small CNN and a small ResNet, with or without BN.

Shapes and conventions: images are NHWC, ``(N, H, W, C)`` (the bundled digits are ``(N, 8, 8, 1)``,
:func:`bnhelpers.data.load_digits` with ``images=True``); both networks output logits ``(N, n_classes)``
(no softmax; compile with :func:`bnhelpers.training.loop.compile_classifier` or train with
:mod:`bnhelpers.training.compiled`). A BN layer after a convolution normalizes each channel over
``(N, H, W)``: its gamma, beta and moving statistics have shape ``(C,)``. Every convolution is
``3 x 3`` with ``padding="same"`` and a kernel drawn from a seeded He-normal initializer in float32
(:class:`bnhelpers.models.mlp.DrawnInFloat32`), one seed per layer, so networks that differ only in
``norm``, ``placement`` or ``zero_gamma`` start from identical convolution kernels. A convolution
followed directly by BN has ``use_bias=False`` (BN's beta replaces the bias).

- :func:`build_cnn`: ``[Conv -> (BN) -> ReLU -> (BN)] per width``, a 2x2 max-pool between stages,
  then global average pooling and a ``Dense`` to the logits. ``norm=None`` has no BN;
  ``norm="bn"`` puts ``BatchNormalization`` before the ReLU (``placement="pre"``, the usual
  place) or after it (``"post"``). Layers are named ``conv_i``, ``bn_i``, ``relu_i``, ``pool_i``,
  ``gap``, ``logits``.
- :func:`build_resnet`: a stem ``Conv -> (BN) -> ReLU`` to ``width`` channels, ``depth`` residual
  blocks of constant width (no down-sampling, so every shortcut is the identity), global
  average pooling and a ``Dense``. Block ``i`` (layers ``block{i}_...``) computes::

      F(x) = BN_2(Conv_2(ReLU(BN_1(Conv_1(x)))))
      out  = ReLU(x + F(x))          (after_addition="relu", He et al. 2016)
      out  = x + F(x)                (after_addition=None)

  With ``zero_gamma=True`` the last BN of every block starts with gamma = 0
  (``gamma_initializer="zeros"``, Goyal et al. 2017), so at initialization
  ``BN_2(z) = 0 * z_hat + beta = 0`` exactly and ``F(x) = 0``: ``out = x`` for ``after_addition=None``
  and ``out = ReLU(x) = x`` for ``"relu"``, because every block input is the output of a ReLU
  (the stem's or the previous block's) and so is ``>= 0``. The whole residual stack is then the
  identity and the network is as deep, at the start, as its stem and head.
- :func:`residual_stream`: a model over the same layers that returns the stream between the blocks,
  ``[x_0, x_1, ..., x_depth]`` (``x_0`` the stem's output, ``x_i`` block ``i-1``'s output), each
  ``(N, H, W, width)``; and :func:`residual_branches`: each block's ``F(x)`` (its last layer before the
  addition).

Chapters: 10.
"""

from __future__ import annotations

from typing import Sequence

import keras

from ..core.validation import check_positive_int, check_widths
from .mlp import DrawnInFloat32

__all__ = ["NORMS", "PLACEMENTS", "AFTER_ADDITION", "build_cnn", "build_resnet", "residual_stream",
           "residual_branches"]

NORMS = (None, "bn")
PLACEMENTS = ("pre", "post")
AFTER_ADDITION = ("relu", None)


def _check_common(input_shape, n_classes, norm, seed) -> tuple[int, int, int]:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}") from None
    if len(shape) != 3 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"input_shape must be (height, width, channels) of positive ints, got {input_shape!r}")
    check_positive_int(n_classes=n_classes)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    return shape


def _conv(width: int, seed: int, use_bias: bool, name: str) -> keras.layers.Conv2D:
    return keras.layers.Conv2D(width, 3, padding="same", use_bias=use_bias, name=name,
                               kernel_initializer=DrawnInFloat32(keras.initializers.HeNormal(seed=seed)))


def _head(h, n_classes: int, seed: int):
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    kernel = DrawnInFloat32(keras.initializers.GlorotUniform(seed=seed))
    return keras.layers.Dense(n_classes, kernel_initializer=kernel, name="logits")(h)


def build_cnn(input_shape: Sequence[int] = (8, 8, 1), n_classes: int = 10, widths: Sequence[int] = (16, 32), *,
              norm: str | None = None, placement: str = "pre", seed: int = 0, momentum: float = 0.99,
              name: str | None = None) -> keras.Model:
    """A CNN ``input_shape -> [3x3 conv stage per width] -> global average pool -> n_classes`` logits.

    Stage ``i``: ``conv_i`` (``widths[i]`` channels) ``-> bn_i -> relu_i`` (``placement="pre"``) or
    ``conv_i -> relu_i -> bn_i`` (``"post"``), then ``pool_i`` (2x2 max-pool) between stages while the
    map is at least 2x2. ``norm=None`` builds the same network without BN (convolutions with bias).
    ``momentum`` is the BN layers' Keras momentum (the weight of the old moving average).
    """
    shape = _check_common(input_shape, n_classes, norm, seed)
    widths = check_widths(widths)
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    inputs = keras.Input(shape)
    h = inputs
    for i, width in enumerate(widths):
        h = _conv(width, seed * 1000 + i, use_bias=not (norm == "bn" and placement == "pre"), name=f"conv_{i}")(h)
        if norm == "bn" and placement == "pre":
            h = keras.layers.BatchNormalization(momentum=momentum, name=f"bn_{i}")(h)
        h = keras.layers.ReLU(name=f"relu_{i}")(h)
        if norm == "bn" and placement == "post":
            h = keras.layers.BatchNormalization(momentum=momentum, name=f"bn_{i}")(h)
        if i < len(widths) - 1 and min(h.shape[1:3]) >= 2:
            h = keras.layers.MaxPooling2D(2, name=f"pool_{i}")(h)
    outputs = _head(h, n_classes, seed * 1000 + len(widths))
    return keras.Model(inputs, outputs, name=name or f"cnn_{norm or 'nobn'}")


def build_resnet(input_shape: Sequence[int] = (8, 8, 1), n_classes: int = 10, *, depth: int = 3, width: int = 16,
                 norm: str | None = "bn", zero_gamma: bool = False, after_addition: str | None = "relu",
                 seed: int = 0, name: str | None = None) -> keras.Model:
    """A ResNet: stem, ``depth`` residual blocks of ``width`` channels, global average pool, logits.

    See the module docstring for the block. ``norm=None`` removes every BN (convolutions get a bias);
    ``zero_gamma=True`` (BN only) initializes each block's last BN, ``block{i}_bn2``, with
    ``gamma_initializer="zeros"``. For a given ``seed`` the convolution and logit kernels do not depend
    on ``norm``, ``zero_gamma`` or ``after_addition``, and the stem's and the head's not on ``depth`` either:
    with zero-gamma, networks of every depth compute the same function at initialization.
    """
    shape = _check_common(input_shape, n_classes, norm, seed)
    check_positive_int(depth=depth, width=width)
    if depth > 499:
        raise ValueError(f"depth must be at most 499 (one seed per convolution below the head's), got {depth}")
    if not isinstance(zero_gamma, bool):
        raise ValueError(f"zero_gamma must be True or False, got {zero_gamma!r}")
    if zero_gamma and norm is None:
        raise ValueError("zero_gamma=True needs norm='bn': it initializes the gamma of each block's last BN")
    if after_addition not in AFTER_ADDITION:
        raise ValueError(f"after_addition must be one of {AFTER_ADDITION}, got {after_addition!r}")
    bn = norm == "bn"
    inputs = keras.Input(shape)
    h = _conv(width, seed * 1000, use_bias=not bn, name="stem_conv")(inputs)
    if bn:
        h = keras.layers.BatchNormalization(name="stem_bn")(h)
    h = keras.layers.ReLU(name="stem_relu")(h)
    for i in range(depth):
        f = _conv(width, seed * 1000 + 2 * i + 1, use_bias=not bn, name=f"block{i}_conv1")(h)
        if bn:
            f = keras.layers.BatchNormalization(name=f"block{i}_bn1")(f)
        f = keras.layers.ReLU(name=f"block{i}_relu1")(f)
        f = _conv(width, seed * 1000 + 2 * i + 2, use_bias=not bn, name=f"block{i}_conv2")(f)
        if bn:
            f = keras.layers.BatchNormalization(gamma_initializer="zeros" if zero_gamma else "ones",
                                                name=f"block{i}_bn2")(f)
        if after_addition == "relu":
            h = keras.layers.Add(name=f"block{i}_add")([h, f])
            h = keras.layers.ReLU(name=f"block{i}_out")(h)
        else:
            h = keras.layers.Add(name=f"block{i}_out")([h, f])
    outputs = _head(h, n_classes, seed * 1000 + 999)   # the same head at every depth
    tag = "nobn" if not bn else "bn_zero_gamma" if zero_gamma else "bn"
    return keras.Model(inputs, outputs, name=name or f"resnet{depth}_{tag}")


def _blocks(model: keras.Model) -> int:
    names = {layer.name for layer in model.layers}
    if "stem_relu" not in names or "block0_out" not in names:
        raise ValueError(f"{model.name!r} is not a model from build_resnet (no stem_relu / block0_out layers)")
    depth = 0
    while f"block{depth}_out" in names:
        depth += 1
    return depth


def residual_stream(model: keras.Model) -> keras.Model:
    """A model (same layers, same weights) returning ``[x_0, ..., x_depth]``: the stem's output, then each block's."""
    depth = _blocks(model)
    names = ["stem_relu"] + [f"block{i}_out" for i in range(depth)]
    return keras.Model(model.input, [model.get_layer(n).output for n in names], name=f"{model.name}_stream")


def residual_branches(model: keras.Model) -> keras.Model:
    """A model (same layers, same weights) returning each block's residual branch ``F(x)``, the input of its addition."""
    depth = _blocks(model)
    add = {layer.name: layer for layer in model.layers if isinstance(layer, keras.layers.Add)}
    outputs = []
    for i in range(depth):
        layer = add.get(f"block{i}_add") or add[f"block{i}_out"]
        outputs.append(layer.input[1])
    return keras.Model(model.input, outputs, name=f"{model.name}_branches")
