"""bnhelpers.layers.walk: the one walk over a layer tree, what counts as BN, and what a layer receives."""

import keras
import numpy as np
import pytest

from bnhelpers.layers.batch_norm import MomentsBatchNorm
from bnhelpers.layers.ghost import GhostBatchNormalization
from bnhelpers.layers.variants import noisy_batch_norm, reseed_noise
from bnhelpers.layers.walk import bn_layers, is_batch_norm, layer_inputs_model, walk_layers
from bnhelpers.models.mlp import build_mlp
from bnhelpers.tools.freezing import InferenceMode
from unsupported_models import Subclassed, masked, nested_shared, nested_subclassed, shared, subclassed, with_inference_mode

X = np.random.default_rng(0).normal(1.0, 2.0, (9, 3)).astype("float32")


def _nested():
    """outer: bn_0 -> inner (Sequential: bn_a, d, bn_b) -> block (functional: dense, bn_f) -> bn_c."""
    keras.utils.set_random_seed(0)
    inner = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization(name="bn_a"),
                              keras.layers.Dense(3, name="d"), MomentsBatchNorm(name="bn_b")], name="inner")
    block_in = keras.Input((3,))
    block_out = GhostBatchNormalization(2, name="bn_f")(keras.layers.Dense(3, name="dense")(block_in))
    block = keras.Model(block_in, block_out, name="block")
    inputs = keras.Input((3,))
    h = block(inner(keras.layers.BatchNormalization(name="bn_0")(inputs)))
    return keras.Model(inputs, keras.layers.BatchNormalization(name="bn_c")(h), name="outer")


def _names(layers):
    return [layer.name for layer in layers if not isinstance(layer, keras.layers.InputLayer)]


def test_walk_order_is_keras_own_flattening():
    model = _nested()
    # Keras's private Layer._flatten_layers, read here only to pin the documented order; it also
    # lists a Sequential model's InputLayer, which Sequential.layers omits, hence _names.
    keras_order = _names(model._flatten_layers(include_self=True, recursive=True))
    assert _names(walk_layers(model)) == keras_order
    assert keras_order == ["outer", "bn_0", "inner", "bn_b", "d", "bn_a", "block", "bn_f", "dense", "bn_c"]
    assert [layer.path for layer in bn_layers(model)] == ["bn_0", "inner/bn_b", "inner/bn_a", "bn_f", "bn_c"]


def test_walk_finds_bn_inside_inference_mode_and_custom_layers():
    keras.utils.set_random_seed(0)
    block = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization(name="frozen_bn")], name="block")

    class Holder(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.pair = [keras.layers.Dense(3, name="listed"), MomentsBatchNorm(name="listed_bn")]
            self.by_name = {"bn": keras.layers.BatchNormalization(name="dict_bn")}
            self._hidden = keras.layers.BatchNormalization(name="hidden_bn")  # private: not walked

        def call(self, x):
            return self._hidden(self.by_name["bn"](self.pair[1](self.pair[0](x))))

    inputs = keras.Input((3,))
    model = keras.Model(inputs, Holder(name="holder")(InferenceMode(block, name="wrapped")(inputs)))
    names = [layer.name for layer in walk_layers(model)]
    assert {"wrapped", "block", "frozen_bn", "holder", "listed", "listed_bn", "dict_bn"} <= set(names)
    assert "hidden_bn" not in names   # the documented limit: sub-layers under a "_" name are not found
    assert {layer.name for layer in bn_layers(model)} == {"frozen_bn", "listed_bn", "dict_bn"}


def test_a_shared_layer_is_listed_once():
    keras.utils.set_random_seed(0)
    shared_bn = keras.layers.BatchNormalization(name="shared_bn")
    sub_in = keras.Input((3,))
    sub = keras.Model(sub_in, shared_bn(sub_in), name="sub")
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Add()([sub(inputs), sub(shared_bn(inputs))]))
    names = [layer.name for layer in walk_layers(model)]
    assert names.count("shared_bn") == 1 and names.count("sub") == 1
    assert [layer.name for layer in bn_layers(model)] == ["shared_bn"]


def test_is_batch_norm_is_duck_typed_and_needs_a_built_layer():
    class MyNorm(keras.layers.Layer):
        def build(self, shape):
            self.moving_mean = self.add_weight(shape=shape[-1:], initializer="zeros", trainable=False)
            self.moving_variance = self.add_weight(shape=shape[-1:], initializer="ones", trainable=False)

    built = MyNorm()
    built.build((None, 3))
    assert is_batch_norm(built) and not is_batch_norm(MyNorm())
    assert not is_batch_norm(keras.layers.BatchNormalization())   # not built: no moving_mean yet
    assert not is_batch_norm(keras.layers.Dense(2)) and not is_batch_norm(np.zeros(3))
    assert bn_layers(built) == [built]   # a BN layer on its own


def test_walk_and_bn_layers_errors():
    with pytest.raises(TypeError, match="expected a Keras model or layer, got ndarray"):
        list(walk_layers(np.zeros(3)))
    with pytest.raises(TypeError, match="expected a Keras model or layer, got str"):
        bn_layers("model")
    with pytest.raises(ValueError, match="'plain' has no built batch-normalization layer"):
        bn_layers(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="plain"))
    unbuilt = keras.Sequential([keras.layers.BatchNormalization()], name="unbuilt")
    with pytest.raises(ValueError, match="'unbuilt' has no built batch-normalization layer"):
        bn_layers(unbuilt)


def test_layer_inputs_model_returns_each_input_in_call_order():
    model = _nested()
    tap, called = layer_inputs_model(model, bn_layers(model))
    assert [layer.path for layer in called] == ["bn_0", "inner/bn_a", "inner/bn_b", "bn_f", "bn_c"]
    values = tap(X, training=False)
    # the same numbers as reading each input with sub-models of the original graph
    inner, block = model.get_layer("inner"), model.get_layer("block")
    bn_0_out = model.get_layer("bn_0")(X, training=False)
    bn_a_out = inner.get_layer("bn_a")(bn_0_out, training=False)
    inner_out = inner(bn_0_out, training=False)
    expected = [X, bn_0_out, inner.get_layer("d")(bn_a_out), block.get_layer("dense")(inner_out),
                block(inner_out, training=False)]
    for value, reference in zip(values, expected, strict=True):
        np.testing.assert_array_equal(np.asarray(value), np.asarray(reference))
    # with_outputs: the model's own output follows, bit for bit as model(x)
    both = layer_inputs_model(model, called[1:2], with_outputs=True).model(X, training=False)
    assert len(both) == 2
    np.testing.assert_array_equal(np.asarray(both[1]), np.asarray(model(X, training=False)))


def test_layer_inputs_model_in_training_mode_with_noisy_bn_changes_no_weight():
    keras.utils.set_random_seed(0)
    model = build_mlp(3, 2, (4, 4), bn="pre", seed=0, norm_factory=noisy_batch_norm(seed=1))
    weights = [w.copy() for w in model.get_weights()]
    tap, called = layer_inputs_model(model, bn_layers(model))
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights(), strict=True))
    nested = [layer for layer in model.layers if isinstance(layer, keras.Sequential)]
    assert called == [block.layers[0] for block in nested] and len(called) == 2
    reseed_noise(model, 5)
    value = np.asarray(tap(X, training=True)[1])
    reseed_noise(model, 5)
    expected = keras.Model(model.input, model.get_layer("dense_1").output)(X, training=True)
    np.testing.assert_array_equal(value, np.asarray(expected))   # batch statistics and noise upstream
    assert not np.allclose(value, np.asarray(tap(X, training=False)[1]))


def test_layer_inputs_model_converts_like_the_layer():
    inputs = keras.Input((3,))
    bn = keras.layers.BatchNormalization(dtype="float64", name="bn64")
    model = keras.Model(inputs, bn(inputs))
    value = layer_inputs_model(model, [bn]).model(X)   # one output: a tensor
    assert value.dtype == "float64"
    np.testing.assert_array_equal(np.asarray(value), X.astype("float64"))


def test_layer_inputs_model_eager_built_sequential():
    model = keras.Sequential([keras.layers.Dense(3, name="d"), keras.layers.BatchNormalization(name="bn")])
    model(X[:1])   # built on a batch of one: the graph view must not keep that batch size
    value = layer_inputs_model(model, bn_layers(model)).model(X)
    np.testing.assert_array_equal(np.asarray(value), np.asarray(model.get_layer("d")(X)))


@pytest.mark.parametrize("make, match", [
    (subclassed, r"'custom' \(Subclassed\) is not a functional or Sequential model: Keras keeps no graph"),
    (nested_subclassed,
     r"layer 'sub_bn' is held by 'custom' \(Subclassed\), which calls it inside its own call\(\)"),
    (with_inference_mode, r"layer 'wrapped_bn' is held by 'frozen' \(InferenceMode\)"),
    (shared, r"layer 'twice' is called 2 times by the forward pass .* \(a shared layer\)"),
    (nested_shared, r"layer 'in_sub' is called 2 times"),
    (masked, "layer 'bn_masked' receives a masked input; masked inputs are not supported"),
])
def test_layer_inputs_model_refuses_what_it_cannot_read(make, match):
    model = make()
    with pytest.raises(ValueError, match=match):
        layer_inputs_model(model, bn_layers(model))


def test_layer_inputs_model_argument_errors():
    model = _nested()
    stranger = keras.layers.BatchNormalization(name="stranger")
    stranger.build((None, 3))
    with pytest.raises(ValueError, match="layer 'stranger' is not called by the forward pass of 'outer'"):
        layer_inputs_model(model, [stranger])
    with pytest.raises(TypeError, match="expected a functional or Sequential Keras model, got BatchNormalization"):
        layer_inputs_model(stranger, [stranger])
    with pytest.raises(TypeError, match="layers must be Keras layers, got str"):
        layer_inputs_model(model, ["bn_0"])
    with pytest.raises(ValueError, match="Sequential model 'unbuilt' is not built"):
        layer_inputs_model(keras.Sequential([keras.layers.Dense(2)], name="unbuilt"), [stranger])


def test_bn_axis_reads_the_layer_axis():
    from bnhelpers.layers.walk import bn_axis

    layer = keras.layers.BatchNormalization(axis=-1)
    assert bn_axis(layer) == -1 and bn_axis(layer, rank=4) == 3
    assert bn_axis(keras.layers.BatchNormalization(axis=1), rank=4) == 1
    multi = keras.layers.LayerNormalization(axis=[1, 2])
    with pytest.raises(ValueError, match="single channel axis"):
        bn_axis(multi)
