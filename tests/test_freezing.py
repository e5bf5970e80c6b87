"""bnhelpers.tools.freezing: keeping BN statistics fixed while fine-tuning."""

import keras
import numpy as np
import pytest

from bnhelpers.tools.checks import changed, snapshot
from bnhelpers.tools.freezing import InferenceMode, freeze_bn_layers
from bnhelpers.models.mlp import build_mlp
from bnhelpers.training.loop import compile_classifier

X = np.random.default_rng(0).normal(0.5, 1.0, (64, 8)).astype("float32")
Y = (X[:, 0] > 0.5).astype("int64")


def _base():
    keras.utils.set_random_seed(0)
    mlp = build_mlp(8, 2, (6, 6), bn="pre", seed=0)
    return keras.Model(mlp.input, mlp.get_layer("relu_1").output, name="base")


def _fine_tune(make_features):
    base = _base()
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(2)(make_features(base, inputs)))
    compile_classifier(model, learning_rate=0.05)
    before = snapshot(base)
    model.fit(X, Y, batch_size=16, epochs=1, verbose=0)
    moved = changed(before, snapshot(base))
    return {kind: any(v for k, v in moved.items() if k.endswith(kind))
            for kind in ("kernel", "gamma", "moving_mean", "moving_variance")}


def test_nested_training_false_is_overridden_by_fit_in_keras3():
    """The behaviour the module docstring warns about (keras-team/keras#20285)."""
    kinds = _fine_tune(lambda base, inputs: base(inputs, training=False))
    assert kinds["moving_mean"] and kinds["moving_variance"]


def test_freeze_bn_layers_keeps_statistics_and_affine_parameters():
    def features(base, inputs):
        assert freeze_bn_layers(base) == 2
        return base(inputs)
    assert _fine_tune(features) == {"kernel": True, "gamma": False, "moving_mean": False, "moving_variance": False}


def test_inference_mode_keeps_statistics_but_trains_gamma():
    kinds = _fine_tune(lambda base, inputs: InferenceMode(base)(inputs))
    assert kinds == {"kernel": True, "gamma": True, "moving_mean": False, "moving_variance": False}


def test_inference_mode_output_and_errors():
    base = _base()
    wrapped = InferenceMode(base)
    np.testing.assert_allclose(wrapped(X, training=True).numpy(), base(X, training=False).numpy(), atol=1e-6)
    assert wrapped.compute_output_shape((None, 8)) == (None, 6)
    with pytest.raises(TypeError, match="block must be a Keras layer or model, got ndarray"):
        InferenceMode(np.zeros(3))
    with pytest.raises(ValueError, match="has no built batch-normalization layer"):
        freeze_bn_layers(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
