"""Model builders shared by the chapters: multilayer perceptrons with or without BN.

- :func:`build_mlp`: ``input_dim -> widths... -> n_outputs`` logits, the network of most experiments;
- :func:`build_deep_regressor`: the deep ``1 -> 7 x 30 -> 1`` regressor of Morvan Zhou's BN
  tutorial (chapter 4), built with :func:`build_mlp`.

``bn`` places the normalization layer:

- ``None``: ``Dense -> activation``
- ``"pre"``: ``Dense(use_bias=False) -> BN -> activation`` (BN's beta replaces the bias)
- ``"post"``: ``Dense -> activation -> BN``

Kernels are drawn from seeded initializers (one seed per layer), so models that
differ only in ``bn`` start from identical Dense kernels. They are drawn in
float32 and then cast (:class:`DrawnInFloat32`), so a network built after
``keras.config.set_floatx("float64")`` starts from exactly the weights of its
float32 twin (chapters 4 to 8 train in float64, see the README's "Writing a chapter").

Compile with :func:`bnhelpers.training.loop.compile_classifier`.

Chapters: 2, 4, 5, 6, 7, 8, 10, 11.
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras

from ..core.validation import check_widths
from ..layers.batch_norm import MomentsBatchNorm

__all__ = ["DrawnInFloat32", "build_mlp", "build_deep_regressor"]

PLACEMENTS = (None, "pre", "post")


@keras.saving.register_keras_serializable(package="bnhelpers")
class DrawnInFloat32(keras.initializers.Initializer):
    """Draw with ``initializer`` in float32, then cast to the dtype asked for.

    Keras's random initializers draw different numbers for different dtypes; this
    keeps the float32 numbers, exactly, in a float64 (or float16) variable.
    """

    def __init__(self, initializer):
        self.initializer = keras.initializers.get(initializer)

    def __call__(self, shape, dtype=None):
        values = self.initializer(shape, dtype="float32")
        return keras.ops.cast(values, dtype or keras.config.floatx())

    def get_config(self):
        return {"initializer": keras.initializers.serialize(self.initializer)}

    @classmethod
    def from_config(cls, config):
        return cls(keras.initializers.deserialize(config["initializer"]))


def build_mlp(
    input_dim: int,
    n_outputs: int,
    widths: Sequence[int] = (100, 100),
    *,
    bn: str | None = None,
    activation: str = "relu",
    seed: int = 0,
    init_std: float | None = None,
    norm_factory: Callable[[], keras.layers.Layer] | None = None,
    name: str | None = None,
) -> keras.Model:
    """An MLP ``input_dim -> widths... -> n_outputs`` (logits, no final activation).

    ``init_std`` draws kernels from N(0, init_std^2) instead of Glorot uniform.
    ``norm_factory`` builds the normalization layer (default
    ``keras.layers.BatchNormalization()``), e.g. to try GroupNormalization or
    ``MomentsBatchNorm`` in the same place.
    """
    if bn not in PLACEMENTS:
        raise ValueError(f"bn must be one of {PLACEMENTS}, got {bn!r}")
    widths = check_widths(widths)
    if input_dim < 1 or n_outputs < 1:
        raise ValueError("input_dim and n_outputs must be >= 1")
    factory = norm_factory or keras.layers.BatchNormalization

    def kernel(i):
        if init_std is None:
            return DrawnInFloat32(keras.initializers.GlorotUniform(seed=seed * 1000 + i))
        return DrawnInFloat32(keras.initializers.RandomNormal(stddev=init_std, seed=seed * 1000 + i))

    inputs = keras.Input((input_dim,))
    h = inputs
    for i, width in enumerate(widths):
        h = keras.layers.Dense(int(width), use_bias=bn != "pre", kernel_initializer=kernel(i),
                               name=f"dense_{i}")(h)
        if bn == "pre":
            h = factory()(h)
        h = keras.layers.Activation(activation, name=f"{activation}_{i}")(h)
        if bn == "post":
            h = factory()(h)
    outputs = keras.layers.Dense(n_outputs, kernel_initializer=kernel(len(widths)), name="logits")(h)
    return keras.Model(inputs, outputs, name=name or f"mlp_{bn or 'nobn'}_{activation}")


ACTIVATIONS = ("relu", "tanh")


def build_deep_regressor(activation: str = "relu", *, bn: bool = False, depth: int = 7,
                         width: int = 30, init_std: float = 1.0, momentum: float = 0.5,
                         seed: int = 0) -> keras.Model:
    """Zhou's tutorial's net: ``depth`` hidden layers of ``width`` units, input and output of size 1.

    Kernels are N(0, ``init_std``^2) and identical with and without BN for the same
    ``seed``. With ``bn=True`` every hidden layer is ``Dense(no bias) ->
    MomentsBatchNorm(momentum) -> activation``; ``momentum`` is the EMA decay
    of the moving statistics (the tutorial used 0.5).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if depth < 1 or width < 1:
        raise ValueError(f"depth and width must be >= 1, got {depth} and {width}")
    if init_std <= 0:
        raise ValueError(f"init_std must be > 0, got {init_std}")
    return build_mlp(1, 1, (width,) * depth, bn="pre" if bn else None, activation=activation,
                     seed=seed, init_std=init_std,
                     norm_factory=lambda: MomentsBatchNorm(momentum=momentum),
                     name=f"deep_{activation}_{'bn' if bn else 'nobn'}")
