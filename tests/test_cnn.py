"""bnhelpers.models.cnn: the CNN and ResNet builders (shapes, BN placement, zero-gamma identity, errors)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bnhelpers.data import random_images
from bnhelpers.models.cnn import build_cnn, build_resnet, residual_branches, residual_stream


def _types(model):
    return [type(layer).__name__ for layer in model.layers[1:]]


def _bn(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


@pytest.mark.parametrize("norm, placement, expected", [
    (None, "pre", ["Conv2D", "ReLU", "MaxPooling2D", "Conv2D", "ReLU"]),
    ("bn", "pre", ["Conv2D", "BatchNormalization", "ReLU", "MaxPooling2D", "Conv2D", "BatchNormalization", "ReLU"]),
    ("bn", "post", ["Conv2D", "ReLU", "BatchNormalization", "MaxPooling2D", "Conv2D", "ReLU", "BatchNormalization"]),
])
def test_cnn_layers_and_shapes(norm, placement, expected):
    model = build_cnn(widths=(4, 6), norm=norm, placement=placement)
    assert _types(model) == expected + ["GlobalAveragePooling2D", "Dense"]
    assert model.output.shape[1:] == (10,)
    assert model.get_layer("conv_1").output.shape[1:] == (4, 4, 6)
    out = model(random_images(3, 8, 8, 1), training=True)
    assert out.shape == (3, 10)
    bias = norm is None or placement == "post"
    assert all(model.get_layer(f"conv_{i}").use_bias is bias for i in range(2))
    for layer in _bn(model):   # per channel: parameters and statistics of shape (C,)
        assert layer.gamma.shape == layer.moving_mean.shape == (layer.input.shape[-1],)


def test_cnn_kernels_do_not_depend_on_norm_and_seed_changes_them():
    a, b = build_cnn(widths=(4, 6), seed=3), build_cnn(widths=(4, 6), norm="bn", seed=3)
    for name in ("conv_0", "conv_1", "logits"):
        np.testing.assert_array_equal(a.get_layer(name).kernel.numpy(), b.get_layer(name).kernel.numpy())
    c = build_cnn(widths=(4, 6), seed=4)
    assert not np.array_equal(a.get_layer("conv_0").kernel.numpy(), c.get_layer("conv_0").kernel.numpy())


def test_cnn_stops_pooling_at_one_pixel_and_passes_momentum():
    model = build_cnn((2, 2, 3), 4, widths=(2, 2, 2), norm="bn", momentum=0.5)
    assert [l.name for l in model.layers if isinstance(l, keras.layers.MaxPooling2D)] == ["pool_0"]
    assert all(layer.momentum == 0.5 for layer in _bn(model))


@pytest.mark.parametrize("kwargs, match", [
    ({"norm": "ln"}, r"norm must be one of \(None, 'bn'\), got 'ln'"),
    ({"placement": "middle"}, r"placement must be one of \('pre', 'post'\), got 'middle'"),
    ({"widths": ()}, "widths must be a non-empty list of positive ints"),
    ({"input_shape": (8, 8)}, r"input_shape must be \(height, width, channels\)"),
    ({"n_classes": 0}, "n_classes must be a positive int, got 0"),
    ({"seed": -1}, "seed must be an int >= 0, got -1"),
    ({"momentum": 1.5}, r"momentum must be in \[0, 1\], got 1.5"),
])
def test_cnn_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_cnn(**kwargs)


@pytest.mark.parametrize("after_addition", ["relu", None])
def test_resnet_structure(after_addition):
    model = build_resnet(depth=2, width=4, after_addition=after_addition)
    block = ["Conv2D", "BatchNormalization", "ReLU", "Conv2D", "BatchNormalization", "Add"]
    block += ["ReLU"] if after_addition else []
    assert _types(model) == ["Conv2D", "BatchNormalization", "ReLU"] + block * 2 + ["GlobalAveragePooling2D", "Dense"]
    assert len(_bn(model)) == 1 + 2 * 2
    assert not any(l.use_bias for l in model.layers if isinstance(l, keras.layers.Conv2D))
    assert model(random_images(2, 8, 8, 1), training=False).shape == (2, 10)
    stream = residual_stream(model)(random_images(2, 8, 8, 1))
    assert len(stream) == 3 and all(s.shape == (2, 8, 8, 4) for s in stream)
    assert len(residual_branches(model)(random_images(2, 8, 8, 1))) == 2


def test_resnet_without_bn_has_biases_and_no_bn():
    model = build_resnet(depth=2, width=4, norm=None)
    assert not _bn(model)
    assert all(l.use_bias for l in model.layers if isinstance(l, keras.layers.Conv2D))


@pytest.mark.parametrize("after_addition", ["relu", None])
@pytest.mark.parametrize("training", [True, False])
def test_zero_gamma_makes_every_block_the_identity_at_initialization(after_addition, training):
    model = build_resnet(depth=4, width=6, zero_gamma=True, after_addition=after_addition, seed=1)
    assert [l.name for l in _bn(model) if not np.any(l.gamma.numpy())] == [f"block{i}_bn2" for i in range(4)]
    x = random_images(5, 8, 8, 1, seed=2, mean=0.5)
    stream = [s.numpy() for s in residual_stream(model)(x, training=training)]
    assert np.abs(stream[0]).max() > 0.1
    for before, after in zip(stream[:-1], stream[1:]):
        np.testing.assert_array_equal(after, before)       # exactly, not approximately
    for branch in residual_branches(model)(x, training=training):
        assert not np.any(branch.numpy())
    # with gamma = 1 the blocks are not the identity
    plain = [s.numpy() for s in residual_stream(build_resnet(depth=4, width=6, seed=1))(x, training=training)]
    assert all(np.abs(b - a).max() > 0.1 for a, b in zip(plain[:-1], plain[1:]))


def test_zero_gamma_networks_of_every_depth_start_as_the_same_function():
    x = random_images(6, 8, 8, 1, seed=4)
    outputs = [build_resnet(depth=d, width=4, zero_gamma=True, seed=2)(x, training=True).numpy() for d in (1, 3, 6)]
    for out in outputs[1:]:
        np.testing.assert_array_equal(out, outputs[0])


def test_resnet_kernels_are_shared_across_variants():
    a = build_resnet(depth=2, width=4, seed=5)
    b = build_resnet(depth=2, width=4, seed=5, zero_gamma=True, after_addition=None)
    c = build_resnet(depth=2, width=4, seed=5, norm=None)
    for layer in a.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            np.testing.assert_array_equal(layer.kernel.numpy(), b.get_layer(layer.name).kernel.numpy())
            np.testing.assert_array_equal(layer.kernel.numpy(), c.get_layer(layer.name).kernel.numpy())


def test_zero_gamma_block_convolutions_get_no_gradient_at_initialization():
    model = build_resnet(depth=2, width=4, zero_gamma=True)
    x = random_images(8, 8, 8, 1, seed=3)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x, training=True) ** 2)
    grads = dict(zip([v.path for v in model.trainable_variables], tape.gradient(loss, model.trainable_variables)))
    for path, g in grads.items():
        if "conv" in path and "block" in path:
            assert not np.any(g.numpy()), path
    assert np.abs(grads["block0_bn2/gamma"].numpy()).max() > 0


@pytest.mark.parametrize("kwargs, match", [
    ({"depth": 0}, "depth must be a positive int, got 0"),
    ({"depth": 500}, "depth must be at most 499"),
    ({"width": 2.5}, "width must be a positive int, got 2.5"),
    ({"zero_gamma": "yes"}, "zero_gamma must be True or False, got 'yes'"),
    ({"zero_gamma": True, "norm": None}, "zero_gamma=True needs norm='bn'"),
    ({"after_addition": "tanh"}, r"after_addition must be one of \('relu', None\), got 'tanh'"),
    ({"norm": "gn"}, r"norm must be one of \(None, 'bn'\), got 'gn'"),
])
def test_resnet_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_resnet(**kwargs)


def test_stream_and_branches_need_a_resnet():
    with pytest.raises(ValueError, match="is not a model from build_resnet"):
        residual_stream(build_cnn(widths=(4,)))
    with pytest.raises(ValueError, match="is not a model from build_resnet"):
        residual_branches(build_cnn(widths=(4,)))
