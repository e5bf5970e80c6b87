"""bnhelpers.training.accumulation: accumulated gradients with BN's moving statistics updated once.

Known answers, in float64 where they are exact up to round-off: one micro-batch is a plain
gradient step; without BN the accumulated gradient is the large batch's; the moving
statistics move once, with the pooled (or averaged) statistics of the micro-batches, or per
micro-batch as a hand-written loop moves them; accumulation equals ghost BN.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bnhelpers.core.moving_average import ema
from bnhelpers.layers.ghost import GhostBatchNormalization
from bnhelpers.layers.walk import bn_layers
from bnhelpers.models.mlp import build_mlp
from bnhelpers.tools.population import estimate_bn_statistics, get_bn_statistics
from bnhelpers.training.accumulation import (STATISTICS, GradientAccumulator, accumulate_gradients,
                                             accumulation_step, split_batch)
from bnhelpers.training.steps import gradient_step

# Keras losses compute in keras.config.floatx() *at their creation*: float64 explicitly
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(1.0, 2.0, (24, 6)), rng.integers(0, 3, 24)


def mlp(bn="pre", seed=1, momentum=0.9, factory=None):
    factory = factory or (lambda: keras.layers.BatchNormalization(momentum=momentum))
    return build_mlp(6, 3, (5, 4), bn=bn, seed=seed, norm_factory=factory)


def relative(a, b):
    a = np.concatenate([np.ravel(t) for t in a])
    b = np.concatenate([np.ravel(t) for t in b])
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def large_batch_gradients(model, x, y):
    with tf.GradientTape() as tape:
        loss = LOSS(y, model(x, training=True))
    return tape.gradient(loss, model.trainable_variables)


def hand_written_loop(model, micro_batches):
    grads = [tf.zeros_like(v) for v in model.trainable_variables]
    for xb, yb in micro_batches:
        with tf.GradientTape() as tape:
            loss = LOSS(yb, model(xb, training=True)) / len(micro_batches)
        grads = [g + d for g, d in zip(grads, tape.gradient(loss, model.trainable_variables))]
    return grads


def test_split_batch_cuts_consecutive_nearly_equal_pieces(data):
    x, y = data
    pieces = split_batch(x[:10], y[:10], 3)
    assert [len(px) for px, _ in pieces] == [4, 3, 3]
    np.testing.assert_array_equal(np.concatenate([px for px, _ in pieces]), x[:10])
    np.testing.assert_array_equal(np.concatenate([py for _, py in pieces]), y[:10])


@pytest.mark.parametrize("statistics", STATISTICS)
def test_one_micro_batch_is_a_plain_gradient_step(float64, data, statistics):
    x, y = data
    model, twin = mlp(), mlp()
    loss = accumulation_step(model, keras.optimizers.SGD(0.1), LOSS, [(x, y)], statistics=statistics)
    expected = gradient_step(twin, keras.optimizers.SGD(0.1), LOSS, x, y)
    assert loss == pytest.approx(float(expected), rel=1e-12)
    for a, b in zip(model.get_weights(), twin.get_weights()):   # the moving statistics too
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("bn, factory", [(None, None), ("pre", keras.layers.LayerNormalization)])
@pytest.mark.parametrize("statistics", STATISTICS)
def test_without_bn_the_accumulated_gradient_is_the_large_batch_gradient(float64, data, bn, factory, statistics):
    x, y = data
    model = mlp(bn=bn, factory=factory)
    expected = large_batch_gradients(model, x, y)
    result = accumulate_gradients(model, split_batch(x, y, 5), LOSS, statistics=statistics)  # 5, 5, 5, 5, 4
    assert relative(result.gradients, expected) <= 1e-12
    assert result.loss == pytest.approx(float(LOSS(y, model(x, training=True))), rel=1e-12)
    assert result.statistics == {}


def test_with_bn_the_accumulated_gradient_is_the_hand_written_loop_not_the_large_batch(float64, data):
    x, y = data
    model = mlp()
    start = model.get_weights()
    loop = hand_written_loop(model, split_batch(x, y, 4))
    model.set_weights(start)
    result = accumulate_gradients(model, split_batch(x, y, 4), LOSS)
    assert relative(result.gradients, loop) <= 1e-12
    assert relative(result.gradients, large_batch_gradients(model, x, y)) > 0.01


def test_naive_statistics_are_those_of_the_hand_written_loop_a_k_fold_ema(float64, data):
    x, y = data
    micro = split_batch(x, y, 4)
    model, twin = mlp(), mlp()
    initial = get_bn_statistics(model)
    micro_means = [estimate_bn_statistics(model, xb, batch_size=len(xb), upstream="train") for xb, _ in micro]
    hand_written_loop(model, micro)
    accumulate_gradients(twin, micro, LOSS, statistics="naive")
    for got, (path, want) in zip(get_bn_statistics(twin).values(), get_bn_statistics(model).items()):
        np.testing.assert_allclose(got.mean, want.mean, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(got.variance, want.variance, rtol=1e-12)
        k_fold = ema(np.stack([s[path].mean for s in micro_means]), 0.9, init=initial[path].mean)[-1]
        np.testing.assert_allclose(want.mean, k_fold, rtol=1e-12, atol=1e-15)


def test_pooled_statistics_move_once_with_the_statistics_of_all_examples(float64, data):
    x, y = data
    model = mlp(momentum=0.9)
    first = bn_layers(model)[0]
    first.moving_mean.assign(np.full(5, 0.5))
    first.moving_variance.assign(np.full(5, 2.0))
    h = model.get_layer("dense_0")(x).numpy()           # the first BN layer's input
    result = accumulate_gradients(model, split_batch(x, y, 3), LOSS, statistics="pooled")
    np.testing.assert_allclose(result.statistics[first.path].mean, h.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(result.statistics[first.path].variance, h.var(axis=0), rtol=1e-12)
    np.testing.assert_allclose(first.moving_mean.numpy(), 0.9 * 0.5 + 0.1 * h.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(first.moving_variance.numpy(), 0.9 * 2.0 + 0.1 * h.var(axis=0), rtol=1e-12)


def test_pooled_statistics_of_the_first_bn_layer_are_those_of_a_large_batch_step(float64, data):
    x, y = data
    model, twin = mlp(), mlp()
    GradientAccumulator(model, LOSS).step(keras.optimizers.SGD(0.1), split_batch(x, y, 4))
    gradient_step(twin, keras.optimizers.SGD(0.1), LOSS, x, y)
    got, want = bn_layers(model)[0], bn_layers(twin)[0]
    np.testing.assert_allclose(got.moving_mean.numpy(), want.moving_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(got.moving_variance.numpy(), want.moving_variance.numpy(), rtol=1e-12)


def test_mean_statistics_and_gradients_are_those_of_ghost_bn_on_the_large_batch(float64, data):
    x, y = data
    model = mlp()
    ghost = mlp(factory=lambda: GhostBatchNormalization(virtual_batch_size=6, momentum=0.0))
    ghost.set_weights(model.get_weights())
    expected = large_batch_gradients(ghost, x, y)        # momentum 0: the moving statistics are its update
    result = accumulate_gradients(model, split_batch(x, y, 4), LOSS, statistics="mean")
    assert relative(result.gradients, expected) <= 1e-12
    for got, want in zip(result.statistics.values(), get_bn_statistics(ghost).values()):
        np.testing.assert_allclose(got.mean, want.mean, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(got.variance, want.variance, rtol=1e-12)


def test_every_statistics_trains_the_same_weights(float64, data):
    x, y = data
    schedule = np.arange(24).reshape(3, 8)
    weights = []
    for statistics in STATISTICS:
        model = mlp()
        losses = GradientAccumulator(model, LOSS, statistics=statistics).run(
            keras.optimizers.SGD(0.1), x, y, schedule, micro_batches=2)
        assert losses.shape == (3,) and np.all(np.isfinite(losses))
        weights.append([v.numpy() for v in model.trainable_variables])
    for other in weights[1:]:
        for a, b in zip(weights[0], other):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_run_takes_one_step_per_schedule_row(float64, data):
    x, y = data
    schedule = np.array([[0, 5, 7, 9], [1, 2, 3, 4]])
    model, twin = mlp(), mlp()
    losses = GradientAccumulator(model, LOSS).run(keras.optimizers.SGD(0.1), x, y, schedule, micro_batches=2)
    optimizer, accumulator = keras.optimizers.SGD(0.1), GradientAccumulator(twin, LOSS)
    expected = [accumulator.step(optimizer, split_batch(x[rows], y[rows], 2)) for rows in schedule]
    np.testing.assert_allclose(losses, expected, rtol=1e-12)
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_convolutional_and_channels_first_bn_use_their_channel_axis(float64):
    rng = np.random.default_rng(1)
    x, y = rng.normal(0, 1, (8, 4, 4, 2)), rng.integers(0, 2, 8)
    inputs = keras.Input((4, 4, 2))
    h = keras.layers.Conv2D(3, 3, name="conv")(inputs)                          # (N, 2, 2, 3)
    h = keras.layers.BatchNormalization(momentum=0.0, name="bn_nhwc")(h)
    h = keras.layers.Reshape((6, 2))(keras.layers.Permute((3, 1, 2))(h))      # (N, 6, 2): 6 channels on axis 1
    h = keras.layers.BatchNormalization(axis=1, momentum=0.0, name="bn_axis1")(h)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(h)))
    conv = model.get_layer("conv")(x).numpy()
    micro = [conv[:4], conv[4:]]
    normalized = np.concatenate([(c - c.mean(axis=(0, 1, 2))) / np.sqrt(c.var(axis=(0, 1, 2)) + 1e-3) for c in micro])
    second = normalized.transpose(0, 3, 1, 2).reshape(8, 6, 2)
    result = accumulate_gradients(model, split_batch(x, y, 2), LOSS)            # momentum 0: the pooled values
    expected = {"bn_nhwc": (conv.mean(axis=(0, 1, 2)), conv.var(axis=(0, 1, 2))),
                "bn_axis1": (second.mean(axis=(0, 2)), second.var(axis=(0, 2)))}
    for name, (mean, variance) in expected.items():
        layer = model.get_layer(name)
        assert result.statistics[layer.path].mean.shape == mean.shape
        np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(layer.moving_variance.numpy(), variance, rtol=1e-12)


def test_frozen_bn_layers_keep_their_statistics(data):
    x, y = data
    model = mlp()
    frozen = bn_layers(model)[0]
    frozen.trainable = False
    before = get_bn_statistics(model)
    result = accumulate_gradients(model, split_batch(x, y, 2), LOSS)
    after = get_bn_statistics(model)
    np.testing.assert_array_equal(after[frozen.path].mean, before[frozen.path].mean)
    assert frozen.path not in result.statistics and len(result.statistics) == 1
    other = next(p for p in before if p != frozen.path)
    assert not np.array_equal(after[other].mean, before[other].mean)


def test_a_subclassed_model_works_naively_and_is_refused_when_its_bn_inputs_are_needed(data):
    x, y = data

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense, self.bn, self.out = keras.layers.Dense(4), keras.layers.BatchNormalization(), \
                keras.layers.Dense(3)

        def call(self, inputs, training=None):
            return self.out(self.bn(self.dense(inputs), training=training))

    net = Net()
    net(x[:2])
    assert np.isfinite(accumulate_gradients(net, split_batch(x, y, 2), LOSS, statistics="naive").loss)
    with pytest.raises(ValueError, match="functional or Sequential"):
        GradientAccumulator(net, LOSS)


def test_bad_arguments_raise_clear_errors(data):
    x, y = data
    model = mlp()
    with pytest.raises(ValueError, match="statistics must be one of"):
        GradientAccumulator(model, LOSS, statistics="once")
    with pytest.raises(TypeError, match="Keras model"):
        GradientAccumulator(keras.layers.Dense(2), LOSS)
    with pytest.raises(TypeError, match="callable"):
        GradientAccumulator(model, "mse")
    accumulator = GradientAccumulator(model, LOSS)
    with pytest.raises(ValueError, match="non-empty"):
        accumulator.gradients([])
    with pytest.raises(ValueError, match="not one array"):
        accumulator.gradients(x)
    with pytest.raises(ValueError, match=r"\(x, y\) pair"):
        accumulator.gradients([x])
    with pytest.raises(ValueError, match="is empty"):
        accumulator.gradients([(x[:0], y[:0])])
    with pytest.raises(ValueError, match="but y has"):
        accumulator.gradients([(x[:4], y[:3])])
    with pytest.raises(ValueError, match="positive int"):
        split_batch(x, y, 0)
    with pytest.raises(ValueError, match="non-empty micro-batches"):
        split_batch(x[:3], y[:3], 4)
    with pytest.raises(ValueError, match="disagree"):
        split_batch(x, y[:5], 2)
    with pytest.raises(ValueError, match="schedule must have shape"):
        accumulator.run(keras.optimizers.SGD(0.1), x, y, np.arange(4), micro_batches=2)
    with pytest.raises(ValueError, match="must lie in"):
        accumulator.run(keras.optimizers.SGD(0.1), x, y, np.array([[0, 24]]), micro_batches=2)
    renorm = build_mlp(6, 3, (5,), bn="pre", norm_factory=lambda: keras.layers.BatchNormalization(renorm=True))
    with pytest.raises(ValueError, match="renorm"):
        GradientAccumulator(renorm, LOSS)
