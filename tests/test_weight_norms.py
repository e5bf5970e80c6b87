"""bnhelpers.tools.weight_norms: which kernels feed BN, and the norms, cosines and gradients of kernels,
checked against a hand computation and against what scale invariance predicts (exactly, in float64)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bnhelpers.models.mlp import build_mlp
from bnhelpers.tools.weight_norms import WeightNormProbe, kernels_before_bn


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(0, 1, (32, 6)), rng.integers(0, 3, 32)


def bn_mlp(epsilon=1e-12, seed=1):
    return build_mlp(6, 3, (5, 4), bn="pre", seed=seed,
                     norm_factory=lambda: keras.layers.BatchNormalization(epsilon=epsilon))


def test_kernels_before_bn_finds_the_dense_and_conv_layers_that_feed_bn():
    assert [layer.name for layer in kernels_before_bn(build_mlp(6, 3, (5, 4), bn="pre"))] == ["dense_0", "dense_1"]
    inputs = keras.Input((6, 6, 1))
    h = keras.layers.Conv2D(4, 3, use_bias=False, name="conv")(inputs)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Conv2D(2, 3, name="conv_plain")(h)
    model = keras.Model(inputs, keras.layers.Flatten()(h))
    assert [layer.name for layer in kernels_before_bn(model)] == ["conv"]
    sequential = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="d"),
                                   keras.layers.BatchNormalization(), keras.layers.Dense(2, name="out")])
    assert [layer.name for layer in kernels_before_bn(sequential)] == ["d"]


@pytest.mark.parametrize("bn", [None, "post"])
def test_kernels_before_bn_rejects_models_where_no_kernel_feeds_bn(bn):
    with pytest.raises(ValueError, match="has no layer with a kernel whose output goes into BN"):
        kernels_before_bn(build_mlp(6, 3, (5,), bn=bn))


def test_measure_matches_a_hand_computed_softmax_gradient(data):
    """One Dense layer (no bias) to the logits: grad = X^T (softmax(XW) - onehot(y)) / N."""
    x, y = data
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, use_bias=False, name="w")])
    w = model.get_layer("w").kernel.numpy().astype(np.float64)
    x32 = x.astype(np.float32).astype(np.float64)
    z = x32 @ w
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    g = x32.T @ (p - np.eye(3)[y]) / len(y)
    result = WeightNormProbe(model, x, y, layers=["w"], learning_rate=0.5).measure()
    assert result["loss"] == pytest.approx(-np.mean(np.log(p[np.arange(len(y)), y])), rel=1e-5)
    assert result["norm"][0] == pytest.approx(np.linalg.norm(w), rel=1e-6)
    assert result["grad_norm"][0] == pytest.approx(np.linalg.norm(g), rel=1e-4)
    assert result["inner"][0] == pytest.approx(np.sum(w * g), rel=1e-3, abs=1e-6)
    cos = np.sum(w * g) / (np.linalg.norm(w) * np.linalg.norm(g))
    assert result["cos"][0] == pytest.approx(cos, rel=1e-3, abs=1e-6)
    columns = np.abs(np.sum(w * g, axis=0)) / (np.linalg.norm(w, axis=0) * np.linalg.norm(g, axis=0))
    assert result["unit_cos"][0] == pytest.approx(columns.max(), rel=1e-3)
    assert result["effective_lr"][0] == pytest.approx(0.5 / np.sum(w**2), rel=1e-6)


def test_bn_kernels_are_scale_invariant_orthogonal_and_their_gradient_scales_as_one_over_c(float64, data):
    x, y = data
    model = bn_mlp()
    probe = WeightNormProbe(model, x, y, layers=["dense_0", "dense_1", "logits"])
    base = probe.measure()
    assert np.all(base["unit_cos"][:2] < 1e-9)                      # every column orthogonal to its gradient
    assert base["unit_cos"][2] > 1e-3                                # the output kernel: no BN after it
    for c in (0.1, 10.0):
        assert probe.measure(scale=(c, c, 1.0))["loss"] == pytest.approx(base["loss"], rel=1e-9)
        assert abs(probe.measure(scale=(1.0, 1.0, c))["loss"] - base["loss"]) > 1e-3 * base["loss"]
    ratio = probe.gradient_scaling((0.1, 2.0, 10.0))
    assert ratio.shape == (3, 3)
    np.testing.assert_allclose(ratio[:, :2], 1.0, rtol=1e-8)
    assert np.all(np.abs(ratio[:, 2] - 1) > 1e-3)


def test_scaling_a_kernel_by_c_is_dividing_epsilon_by_c_squared(float64, data):
    """BN(c z; eps) = BN(z; eps / c^2): the invariance fails where the variance is not large against eps."""
    x, y = data
    scaled = WeightNormProbe(bn_mlp(epsilon=1e-6), x, y).measure(scale=1e-3)
    equivalent = WeightNormProbe(bn_mlp(epsilon=1.0), x, y).measure()
    assert scaled["loss"] == pytest.approx(equivalent["loss"], rel=1e-9)
    np.testing.assert_allclose(scaled["unit_cos"], equivalent["unit_cos"], rtol=1e-6)
    np.testing.assert_allclose(scaled["grad_norm"] * 1e-3, equivalent["grad_norm"], rtol=1e-6)
    assert equivalent["unit_cos"].max() > 0.1                          # far from orthogonal


def test_an_sgd_step_grows_a_bn_kernel_by_exactly_lr_squared_times_grad_squared(float64, data):
    x, y = data
    model, lr = bn_mlp(), 0.3
    probe = WeightNormProbe(model, x, y, learning_rate=lr)
    before = probe.measure()
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    for v, g in zip(model.trainable_variables, tape.gradient(loss, model.trainable_variables)):
        v.assign_sub(lr * g)
    assert float(loss) == pytest.approx(before["loss"], rel=1e-12)
    np.testing.assert_allclose(probe.norms() ** 2, before["norm"] ** 2 + lr**2 * before["grad_norm"] ** 2, rtol=1e-12)
    np.testing.assert_allclose(before["effective_lr"], lr / before["norm"] ** 2)


def test_probe_leaves_the_model_alone_and_works_as_a_probe_of_the_compiled_loop(data):
    from bnhelpers.training.compiled import CompiledTrainer, train_with_evaluation

    x, y = data
    model = build_mlp(6, 3, (5,), bn="pre", seed=0)
    before = [v.numpy().copy() for v in model.variables]
    trainer = CompiledTrainer(model, x.astype(np.float32), y, learning_rate=0.1)
    probe = WeightNormProbe(model, x[:16], y[:16], learning_rate=lambda: trainer.learning_rate)
    probe.measure(scale=3.0)
    probe.gradient_scaling()
    probe.measure(x[16:], y[16:])
    for v, b in zip(model.variables, before):
        np.testing.assert_array_equal(v.numpy(), b)
    record = train_with_evaluation(trainer, np.arange(30).reshape(3, 10) % 32, 1, {"w": probe})
    assert record["w"].shape == (4, 1, len(WeightNormProbe.FIELDS))
    assert np.all(np.diff(record["w"][:, 0, 0]) > 0)                 # SGD grows a kernel that feeds BN
    trainer.set_learning_rate(0.4)
    assert probe()[0, WeightNormProbe.FIELDS.index("effective_lr")] == pytest.approx(0.4 / probe.norms()[0] ** 2)
    np.testing.assert_allclose(probe(model)[:, 0], probe.norms(), rtol=1e-6)
    assert probe.names == ["dense_0"]


def test_conv_kernels_count_units_along_the_last_axis(float64):
    rng = np.random.default_rng(1)
    inputs = keras.Input((5, 5, 2))
    h = keras.layers.Conv2D(3, 3, use_bias=False, name="conv")(inputs)
    h = keras.layers.BatchNormalization(epsilon=1e-12)(h)
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(h))
    model = keras.Model(inputs, keras.layers.Dense(2)(h))
    probe = WeightNormProbe(model, rng.normal(0, 1, (8, 5, 5, 2)), rng.integers(0, 2, 8))
    result = probe.measure()
    assert result["unit_cos"][0] < 1e-9 and result["norm"][0] == pytest.approx(np.linalg.norm(
        model.get_layer("conv").kernel.numpy()))


def test_bad_arguments_are_rejected(data):
    x, y = data
    model = build_mlp(6, 3, (5,), bn="pre", seed=0)
    other = build_mlp(6, 3, (5,), bn="pre", seed=0)
    with pytest.raises(ValueError, match="learning_rate must be a number > 0"):
        WeightNormProbe(model, x, y, learning_rate=0)
    with pytest.raises(TypeError, match="x must be a float array"):
        WeightNormProbe(model, x.astype(int), y)
    with pytest.raises(TypeError, match="y must be a 1-D array of integer labels"):
        WeightNormProbe(model, x, y.astype(float))
    with pytest.raises(ValueError, match="x and y need the same length"):
        WeightNormProbe(model, x, y[:5])
    with pytest.raises(ValueError, match="has no kernel"):
        WeightNormProbe(model, x, y, layers=[model.layers[2]])
    with pytest.raises(ValueError, match="is not a trainable variable of"):
        WeightNormProbe(model, x, y, layers=[other.get_layer("dense_0")])
    with pytest.raises(ValueError, match="layers must not be empty"):
        WeightNormProbe(model, x, y, layers=[])
    probe = WeightNormProbe(model, x, y)
    for bad in (0.0, -1.0, True, (1.0, 2.0), float("inf")):
        with pytest.raises(ValueError, match="scale must be"):
            probe.measure(scale=bad)
    with pytest.raises(ValueError, match="give both x and y"):
        probe.measure(x)
    with pytest.raises(ValueError, match="disagree in length"):
        probe.measure(x, y[:3])
    with pytest.raises(ValueError, match="scales must be a non-empty"):
        probe.gradient_scaling(())
    with pytest.raises(ValueError, match="built for another model"):
        probe(other)
