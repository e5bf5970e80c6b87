"""Fine-tuning helpers: keep BN layers in inference mode while the rest of a model trains.

Keras 3 runs a BN layer with ``trainable=False`` in inference mode. When a
pretrained block is later unfrozen, its BN layers would train again, with the
small batches of the new data. The Keras transfer-learning guide suggests calling
the block with ``training=False`` inside the new functional model, but in
Keras 3 (checked with 3.15.1) the outer model's flag overrides it: ``fit`` calls
the outer model with ``training=True`` and the functional graph passes that
value on to every nested call (keras-team/keras#20285). Two reliable ways:

- :func:`freeze_bn_layers`: set ``trainable=False`` on every BN layer of a block
  (gamma and beta are frozen too);
- :class:`InferenceMode`: wrap the block in a layer whose ``call`` always calls
  it with ``training=False`` (gamma, beta and the other weights still train,
  the statistics stay).

Chapters: 5.
"""

from __future__ import annotations

import keras

from ..layers.walk import bn_layers

__all__ = ["freeze_bn_layers", "InferenceMode"]


def freeze_bn_layers(model) -> int:
    """Set ``trainable=False`` on every BN layer inside ``model`` (in place); return how many.

    Call it *after* ``model.trainable = True`` (which would unfreeze them again)
    and before ``compile``.
    """
    layers = bn_layers(model)
    for layer in layers:
        layer.trainable = False
    return len(layers)


class InferenceMode(keras.layers.Layer):
    """``InferenceMode(block)(x)`` is ``block(x, training=False)`` whatever the caller's flag.

    ``block``: any Keras layer or model. Its trainable weights remain trainable
    (the optimizer still updates them); layers that behave differently in
    training (BN, dropout) always run in inference mode.
    """

    def __init__(self, block, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(block, keras.layers.Layer):
            raise TypeError(f"block must be a Keras layer or model, got {type(block).__name__}")
        self.block = block

    def call(self, inputs, training=None):
        return self.block(inputs, training=False)

    def compute_output_shape(self, input_shape):
        return self.block.compute_output_shape(input_shape)
