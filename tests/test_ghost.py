"""bnhelpers.layers.ghost.GhostBatchNormalization: BN over virtual batches."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st

from bnhelpers.core import reference as ref
from bnhelpers.layers.ghost import GhostBatchNormalization
from bnhelpers.layers.batch_norm import MomentsBatchNorm


def _x(shape, seed=0):
    return np.random.default_rng(seed).normal(1.0, 2.0, shape)


@given(n=st.integers(1, 13), v=st.integers(1, 6), rank=st.sampled_from([2, 4]), seed=st.integers(0, 1000))
def test_each_ghost_batch_is_normalized_on_its_own(n, v, rank, seed):
    shape = (n, 3) if rank == 2 else (n, 2, 3, 3)
    x = _x(shape, seed)
    layer = GhostBatchNormalization(virtual_batch_size=v, epsilon=1e-3, dtype="float64")
    y = layer(x, training=True).numpy()
    axes = tuple(range(rank - 1))
    for start in range(0, n, v):
        chunk = x[start:start + v]
        expected, _ = ref.batchnorm_forward(chunk, np.ones(3), np.zeros(3), axes=axes, epsilon=1e-3) \
            if chunk.size // 3 > 1 else (np.zeros_like(chunk), None)
        np.testing.assert_allclose(y[start:start + v], expected, atol=1e-9)


def test_a_large_virtual_batch_is_ordinary_bn_including_gradients_and_moving_statistics():
    x = _x((8, 4, 4, 2)).astype("float32")
    ghost = GhostBatchNormalization(virtual_batch_size=64, momentum=0.9)
    plain = keras.layers.BatchNormalization(momentum=0.9)
    for layer in (ghost, plain):
        layer.build(x.shape)
        layer.gamma.assign([1.5, 0.5])
    grads = []
    for layer in (ghost, plain):
        xv = tf.Variable(x)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(xv, training=True) * np.arange(x.size).reshape(x.shape) / x.size)
        grads.append(tape.gradient(loss, [xv, layer.gamma, layer.beta]))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ghost.moving_mean.numpy(), plain.moving_mean.numpy(), rtol=1e-5)
    np.testing.assert_allclose(ghost.moving_variance.numpy(), plain.moving_variance.numpy(), rtol=1e-5)
    np.testing.assert_allclose(ghost(x).numpy(), plain(x).numpy(), rtol=1e-5, atol=1e-5)


def test_moving_statistics_average_the_ghost_statistics():
    x = _x((10, 3)).astype("float32")
    layer = GhostBatchNormalization(virtual_batch_size=4, momentum=0.0)
    layer(x, training=True)
    groups = [x[0:4], x[4:8], x[8:10]]
    weights = np.array([4, 4, 2]) / 10
    np.testing.assert_allclose(layer.moving_mean.numpy(), sum(w * g.mean(0) for w, g in zip(weights, groups)), rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(), sum(w * g.var(0) for w, g in zip(weights, groups)),
                               rtol=1e-5)
    assert np.all(layer.moving_variance.numpy() < x.var(0))  # the between-ghost spread is left out


def test_channels_first_and_inference_and_frozen():
    x = _x((6, 3, 2, 2)).astype("float32")
    first = GhostBatchNormalization(virtual_batch_size=3, axis=1)
    last = GhostBatchNormalization(virtual_batch_size=3)
    y_first = first(x, training=True).numpy()
    y_last = last(np.transpose(x, (0, 2, 3, 1)), training=True).numpy()
    np.testing.assert_allclose(y_first, np.transpose(y_last, (0, 3, 1, 2)), atol=1e-5)
    plain = MomentsBatchNorm(axis=1)
    plain.build(x.shape)
    plain.set_weights(first.get_weights())  # gamma, beta, moving mean and variance
    np.testing.assert_allclose(first(x).numpy(), plain(x).numpy(), atol=1e-6)
    before = first.moving_mean.numpy().copy()
    first.trainable = False
    first(x, training=True)
    np.testing.assert_array_equal(first.moving_mean.numpy(), before)


def test_works_inside_fit_with_a_remainder_batch():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    h = GhostBatchNormalization(virtual_batch_size=4)(keras.layers.Dense(8)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    model.compile(optimizer="sgd", loss="mse")
    x, y = _x((21, 4)).astype("float32"), _x((21, 1), 1).astype("float32")
    history = model.fit(x, y, batch_size=10, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def test_config_round_trip_and_bad_arguments():
    layer = GhostBatchNormalization(virtual_batch_size=5, momentum=0.9, name="g")
    clone = GhostBatchNormalization.from_config(layer.get_config())
    assert clone.virtual_batch_size == 5 and clone.momentum == 0.9
    with pytest.raises(ValueError, match="virtual_batch_size must be >= 1, got 0"):
        GhostBatchNormalization(virtual_batch_size=0)
    with pytest.raises(TypeError, match="virtual_batch_size must be an int, got 2.0"):
        GhostBatchNormalization(virtual_batch_size=2.0)
