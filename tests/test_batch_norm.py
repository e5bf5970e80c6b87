"""bnhelpers.layers.batch_norm: MomentsBatchNorm equals keras.layers.BatchNormalization (float32, 1e-5)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bnhelpers.layers.batch_norm import MomentsBatchNorm

SHAPES = {"dense": (16, 5), "nhwc": (8, 4, 4, 3)}


def _pair(shape, momentum=0.9, seed=0):
    rng = np.random.default_rng(seed)
    channels = shape[-1]
    weights = [rng.uniform(0.5, 2, channels), rng.normal(0, 1, channels),
               rng.normal(0, 1, channels), rng.uniform(0.5, 2, channels)]
    weights = [w.astype(np.float32) for w in weights]
    layers = []
    for cls in (keras.layers.BatchNormalization, MomentsBatchNorm):
        layer = cls(momentum=momentum)
        layer.build(shape)
        layer.set_weights(weights)
        layers.append(layer)
    return layers


@pytest.mark.parametrize("kind", SHAPES)
def test_outputs_and_moving_statistics_match_keras(kind):
    shape = SHAPES[kind]
    keras_bn, ours = _pair(shape)
    for step in range(5):
        x = (3.0 + 2.0 * np.random.default_rng(step).standard_normal(shape)).astype(np.float32)
        np.testing.assert_allclose(ours(x, training=True), keras_bn(x, training=True), atol=1e-5)
        np.testing.assert_allclose(ours.moving_mean.numpy(), keras_bn.moving_mean.numpy(), atol=1e-5)
        np.testing.assert_allclose(ours.moving_variance.numpy(), keras_bn.moving_variance.numpy(), atol=1e-5)
    np.testing.assert_allclose(ours(x, training=False), keras_bn(x, training=False), atol=1e-5)
    np.testing.assert_allclose(ours(x), keras_bn(x), atol=1e-5)


def test_training_in_a_model_matches_keras_step_for_step():
    rng = np.random.default_rng(0)
    x = rng.normal(2, 3, (64, 6)).astype(np.float32)
    y = rng.integers(0, 3, 64)

    def model(bn_cls):
        keras.utils.set_random_seed(1)
        return keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, use_bias=False),
                                 bn_cls(), keras.layers.ReLU(), keras.layers.Dense(3)])

    models = [model(keras.layers.BatchNormalization), model(MomentsBatchNorm)]
    for m in models:
        m.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        m.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_trainable_false_means_inference_mode_like_keras():
    shape = SHAPES["dense"]
    keras_bn, ours = _pair(shape)
    keras_bn.trainable = ours.trainable = False
    x = np.random.default_rng(0).normal(5, 2, shape).astype(np.float32)
    before = ours.moving_mean.numpy().copy()
    np.testing.assert_allclose(ours(x, training=True), keras_bn(x, training=True), atol=1e-5)
    np.testing.assert_array_equal(ours.moving_mean.numpy(), before)


def test_float16_input_is_normalized_in_float32():
    layer = MomentsBatchNorm(dtype="mixed_float16")
    x = tf.constant(np.random.default_rng(0).normal(100, 1, (32, 4)), tf.float16)
    y = layer(x, training=True)
    assert y.dtype == tf.float16
    np.testing.assert_allclose(tf.reduce_mean(tf.cast(y, tf.float32), 0), 0.0, atol=1e-2)


def test_config_round_trip():
    layer = MomentsBatchNorm(momentum=0.9, epsilon=1e-4, center=False)
    clone = MomentsBatchNorm.from_config(layer.get_config())
    assert (clone.momentum, clone.epsilon, clone.center, clone.scale) == (0.9, 1e-4, False, True)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"momentum": 1.5}, ValueError, r"momentum must be in \[0, 1\], got 1.5"),
    ({"momentum": -0.1}, ValueError, r"momentum must be in \[0, 1\], got -0.1"),
    ({"momentum": "0.9"}, TypeError, "momentum must be a number, got '0.9'"),
    ({"epsilon": 0.0}, ValueError, r"epsilon must be > 0 in a layer"),
    ({"epsilon": -1e-3}, ValueError, r"epsilon must be a finite number >= 0, got -0.001"),
    ({"axis": "last"}, TypeError, "axis must be an int, got 'last'"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        MomentsBatchNorm(**kwargs)


@pytest.mark.parametrize("shape, axis, match", [
    ((4,), -1, r"MomentsBatchNorm needs rank >= 2 inputs, got shape \(4,\)"),
    ((4, 3), 2, "axis 2 is out of range for a rank-2 input"),
    ((4, 3), 0, "axis 0 is the batch axis; BN normalizes over it, not along it")])
def test_bad_build_shapes(shape, axis, match):
    with pytest.raises(ValueError, match=match):
        MomentsBatchNorm(axis=axis).build(shape)


def test_integer_input_is_rejected():
    layer = MomentsBatchNorm()
    with pytest.raises(TypeError, match="floating-point"):
        layer(tf.constant([[1, 2], [3, 4]]), training=True)


def test_momentum_one_keeps_the_moving_statistics():
    layer = MomentsBatchNorm(momentum=1.0)
    layer(np.random.default_rng(0).normal(3.0, 2.0, (8, 2)).astype("float32"), training=True)
    assert np.all(layer.moving_mean.numpy() == 0.0) and np.all(layer.moving_variance.numpy() == 1.0)


@pytest.mark.parametrize("cls", ["moments", "ghost"])
def test_float64_moving_average_uses_the_exact_momentum(cls):
    """In float64 the update weighs the old average by 0.99 itself, not by float32's 0.9900000095."""
    from bnhelpers.layers.ghost import GhostBatchNormalization

    x = np.random.default_rng(1).normal(3.0, 2.0, (8, 3))
    layer = (MomentsBatchNorm(momentum=0.99, dtype="float64") if cls == "moments"
             else GhostBatchNormalization(virtual_batch_size=8, momentum=0.99, dtype="float64"))
    layer(x, training=True)
    expected = 0.99 * 0.0 + (1 - 0.99) * x.mean(axis=0)
    error = np.abs(layer.moving_mean.numpy() - expected).max() / np.abs(expected).max()
    assert layer.moving_mean.dtype == "float64" and error < 1e-14, error
