"""Models that the tools of ``bnhelpers.layers.walk`` and ``bnhelpers.tools.population`` must refuse or handle with care.

Shared by tests/test_walk.py and tests/test_population.py: a BN inside a subclassed model, inside a custom
wrapper layer (``InferenceMode``), a BN layer called twice (directly or through a nested model) and a masked input.
"""

import keras
import numpy as np

from bnhelpers.tools.freezing import InferenceMode

X = np.random.default_rng(0).normal(1.0, 2.0, (9, 3)).astype("float32")  # what subclassed() is called on


class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.bn = keras.layers.BatchNormalization(name="sub_bn")

    def call(self, x, training=None):
        return self.bn(x, training=training)


def subclassed():
    model = Subclassed(name="custom")
    model(X)
    return model


def nested_subclassed():
    inputs = keras.Input((3,))
    return keras.Model(inputs, Subclassed(name="custom")(inputs))


def with_inference_mode():
    block_in = keras.Input((3,))
    block = keras.Model(block_in, keras.layers.BatchNormalization(name="wrapped_bn")(block_in), name="block")
    inputs = keras.Input((3,))
    return keras.Model(inputs, InferenceMode(block, name="frozen")(inputs))


def shared():
    inputs = keras.Input((3,))
    bn = keras.layers.BatchNormalization(name="twice")
    return keras.Model(inputs, keras.layers.Add()([bn(inputs), bn(keras.layers.Dense(3)(inputs))]))


def nested_shared():
    sub_in = keras.Input((3,))
    sub = keras.Model(sub_in, keras.layers.BatchNormalization(name="in_sub")(sub_in), name="sub")
    inputs = keras.Input((3,))
    return keras.Model(inputs, sub(sub(inputs)))


def masked():
    inputs = keras.Input((4,), dtype="int32")
    h = keras.layers.Embedding(10, 3, mask_zero=True)(inputs)
    return keras.Model(inputs, keras.layers.BatchNormalization(name="bn_masked")(h))
