"""Shared test set-up: TensorFlow is imported quietly and seeded once, through bnhelpers.

Also the scaffolding several test modules share: a tiny BN classifier and random data for it
(test_compiled.py, test_probes.py, test_steps.py), a Dense -> BN model (test_checks.py, test_steps.py), and ``float64``, which builds
layers in float64 while a test runs (test_accumulation.py, test_weight_norms.py).
"""

import os

import numpy as np
import pytest
from hypothesis import settings

from bnhelpers import setup

setup(0)

settings.register_profile("book", deadline=None, max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", 40)))
settings.load_profile("book")


@pytest.fixture
def tiny_classifier():
    """``make(bn="pre", seed=0)``: ``build_mlp`` 6 -> 5 (ReLU) -> 3 logits, BN before the ReLU (``bn=None``: none)."""
    from bnhelpers.models.mlp import build_mlp

    def make(bn="pre", seed=0):
        return build_mlp(6, 3, (5,), bn=bn, activation="relu", seed=seed)

    return make


@pytest.fixture
def classification_data():
    """``(x, y)`` for :func:`tiny_classifier`: x float32 ``(40, 6)`` from N(0, 1), y ints in 0..2 ``(40,)``."""
    rng = np.random.default_rng(0)
    return rng.normal(0, 1, (40, 6)).astype(np.float32), rng.integers(0, 3, 40)


@pytest.fixture
def dense_bn_model():
    """``make()``: ``Input(3) -> Dense(4, name="dense") -> BatchNormalization(name="bn")``, seeded (0)."""
    import keras

    def make():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((3,))
        h = keras.layers.Dense(4, name="dense")(inputs)
        return keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(h))

    return make


@pytest.fixture
def float64():
    """Build layers in float64 while the test runs (known answers then hold to ~1e-12).

    Keras fixes its global dtype policy the first time a layer asks for it, so that is set too:
    ``set_floatx`` alone would leave later layers in float32.
    """
    import keras

    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_floatx(floatx)
    keras.config.set_dtype_policy(policy)
