"""bnhelpers.tools.population: reading, writing and re-estimating BN population statistics."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bnhelpers.layers.batch_norm import MomentsBatchNorm
from bnhelpers.layers.ghost import GhostBatchNormalization
from bnhelpers.layers.variants import noisy_batch_norm
from bnhelpers.layers.walk import bn_layers
from bnhelpers.models.mlp import build_mlp
from bnhelpers.tools.population import (BNStatistics, adabn, estimate_bn_statistics, get_bn_statistics,
                                        precise_bn, predict_with_batch_statistics, set_bn_statistics)
from unsupported_models import Subclassed, shared, subclassed, with_inference_mode


def _mlp(seed=0, bn=keras.layers.BatchNormalization):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((5,))
    h = keras.layers.Dense(6)(inputs)
    h = bn(name="bn_a")(h)
    h = keras.layers.Activation("tanh")(h)
    h = keras.layers.Dense(4)(h)
    h = bn(name="bn_b")(h)
    return keras.Model(inputs, keras.layers.Dense(2)(h))


def _data(n=37, seed=1, shift=3.0):
    return (np.random.default_rng(seed).normal(shift, 2.0, (n, 5))).astype("float32")


def _input_of(model, name, x):
    return keras.Model(model.input, model.get_layer(name).input)(x, training=False).numpy()


def _trained(model, x, steps=3):
    for _ in range(steps):
        model(x, training=True)  # moves the moving statistics away from 0 / 1
    return model


def test_get_and_set_round_trip():
    model = _trained(_mlp(), _data())
    stats = get_bn_statistics(model)
    assert set(stats) == {"bn_a", "bn_b"} and isinstance(stats["bn_a"], BNStatistics)
    new = {k: BNStatistics(v.mean + 1.0, v.variance * 2.0) for k, v in stats.items()}
    set_bn_statistics(model, new)
    for k, v in get_bn_statistics(model).items():
        np.testing.assert_allclose(v.mean, new[k].mean, rtol=1e-6)
        np.testing.assert_allclose(v.variance, new[k].variance, rtol=1e-6)


@pytest.mark.parametrize("bad, match", [
    (lambda s: {"bn_a": s["bn_a"]}, "missing"),
    (lambda s: {**s, "nope": s["bn_a"]}, "unknown"),
    (lambda s: {**s, "bn_a": (np.zeros(3), np.ones(3))}, "shape"),
    (lambda s: {**s, "bn_a": (s["bn_a"].mean, -np.ones(6))}, "non-negative"),
    (lambda s: {**s, "bn_a": (s["bn_a"].mean * np.nan, s["bn_a"].variance)}, "finite"),
])
def test_set_rejects_bad_statistics_and_changes_nothing(bad, match):
    model = _mlp()
    before = get_bn_statistics(model)
    with pytest.raises(ValueError, match=match):
        set_bn_statistics(model, bad(before))
    after = get_bn_statistics(model)
    assert all(np.array_equal(after[k].mean, before[k].mean) for k in before)


@pytest.mark.parametrize("bn", [keras.layers.BatchNormalization, MomentsBatchNorm])
def test_inference_upstream_gives_exact_population_statistics(bn):
    model = _trained(_mlp(bn=bn), _data(seed=5))
    x = _data(n=37)
    before = get_bn_statistics(model)
    weights = [w.copy() for w in model.get_weights()]
    est = estimate_bn_statistics(model, x, batch_size=8)
    # the model is untouched
    for w0, w1 in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(w0, w1)
    # layer a sees Dense(x): its statistics are those of that input over all 37 examples
    xa = _input_of(model, "bn_a", x)
    np.testing.assert_allclose(est["bn_a"].mean, xa.mean(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(est["bn_a"].variance, xa.var(axis=0), rtol=1e-5, atol=1e-6)
    # layer b's input is computed with layer a already recalibrated
    set_bn_statistics(model, est)
    xb = _input_of(model, "bn_b", x)
    np.testing.assert_allclose(est["bn_b"].mean, xb.mean(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(est["bn_b"].variance, xb.var(axis=0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(before["bn_a"].mean, est["bn_a"].mean)


def test_inference_upstream_does_not_depend_on_batch_size():
    model = _trained(_mlp(), _data(seed=2))
    x = _data(n=50)
    a = estimate_bn_statistics(model, x, batch_size=1)
    b = estimate_bn_statistics(model, x, batch_size=50)
    c = estimate_bn_statistics(model, tf.data.Dataset.from_tensor_slices((x, np.zeros(50))).batch(7))
    for k in a:
        for other in (b, c):
            np.testing.assert_allclose(a[k].mean, other[k].mean, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(a[k].variance, other[k].variance, rtol=1e-4, atol=1e-6)


def test_train_upstream_uses_batch_statistics_upstream():
    model = _trained(_mlp(), _data(seed=3))
    x = _data(n=40)
    est = estimate_bn_statistics(model, x, batch_size=40, upstream="train")
    # one batch: layer b's input is what training mode feeds it for that batch
    xb = keras.Model(model.input, model.get_layer("bn_b").input)
    before = get_bn_statistics(model)
    fed = xb(x, training=True).numpy()
    set_bn_statistics(model, before)  # training=True above moved bn_a's statistics
    np.testing.assert_allclose(est["bn_b"].mean, fed.mean(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(est["bn_b"].variance, fed.var(axis=0), rtol=1e-5, atol=1e-6)
    # with batch size 1 every BN output upstream is beta: layer b sees a constant
    est1 = estimate_bn_statistics(model, x, batch_size=1, upstream="train")
    np.testing.assert_allclose(est1["bn_b"].variance, 0.0, atol=1e-10)
    after = get_bn_statistics(model)
    assert all(np.array_equal(after[k].mean, before[k].mean) for k in before)


def test_conv_statistics_are_per_channel_and_channels_first_works():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(2.0, 3.0, (6, 3, 4, 4)).astype("float32")  # NCHW
    inputs = keras.Input((3, 4, 4))
    model = keras.Model(inputs, keras.layers.BatchNormalization(axis=1, name="bn")(inputs))
    est = estimate_bn_statistics(model, x, batch_size=4)
    np.testing.assert_allclose(est["bn"].mean, x.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(est["bn"].variance, x.var(axis=(0, 2, 3)), rtol=1e-5)


def test_renorm_layers_and_frozen_layers():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    renorm = keras.layers.BatchNormalization(renorm=True, name="renorm")
    frozen = keras.layers.BatchNormalization(name="frozen")
    model = keras.Model(inputs, frozen(renorm(inputs)))
    frozen.trainable = False
    x = np.random.default_rng(0).normal(5.0, 2.0, (30, 3)).astype("float32")
    saved = {v.name: v.numpy().copy() for v in renorm.non_trainable_variables}
    old = precise_bn(model, x, batch_size=7)
    np.testing.assert_allclose(renorm.moving_mean.numpy(), x.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(renorm.moving_stddev.numpy(), np.sqrt(x.var(axis=0) + 1e-3), rtol=1e-5)
    np.testing.assert_array_equal(renorm.renorm_mean.numpy(), saved["renorm_mean"])  # restored
    assert frozen.trainable is False and np.any(frozen.moving_mean.numpy() != 0)
    assert np.all(old["frozen"].mean == 0)


def test_adabn_repairs_a_shifted_domain_and_can_be_undone():
    model = _trained(_mlp(), _data(seed=4, shift=0.0), steps=300)
    target = _data(n=200, seed=6, shift=3.0)
    old = adabn(model, target, batch_size=64)
    out = keras.Model(model.input, model.get_layer("bn_a").output)(target, training=False).numpy()
    np.testing.assert_allclose(out.mean(axis=0), model.get_layer("bn_a").beta.numpy(), atol=1e-4)
    set_bn_statistics(model, old)
    np.testing.assert_array_equal(get_bn_statistics(model)["bn_a"].mean, old["bn_a"].mean)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"batch_size": 0}, ValueError, "batch_size must be a positive int, got 0"),
    ({"batch_size": 2.5}, ValueError, "batch_size must be a positive int, got 2.5"),
    ({"upstream": "eval"}, ValueError, r"upstream must be one of \('inference', 'train'\), got 'eval'"),
    ({"data": [[1.0] * 5]}, TypeError, "data must be a NumPy array, a tensor or a tf.data.Dataset, got list"),
    ({"data": np.zeros((0, 5), "float32")}, ValueError, "data is empty"),
    ({"data": tf.data.Dataset.from_tensor_slices(np.zeros((0, 5), "float32")).batch(4)}, ValueError,
     r"these BN layers saw no data: \['bn_a', 'bn_b'\]"),
    ({"data": tf.data.Dataset.from_tensor_slices(np.zeros((0, 5), "float32")).batch(4), "upstream": "train"},
     ValueError, r"these BN layers saw no data: \['bn_a', 'bn_b'\]"),
])
def test_estimate_checks_its_arguments(kwargs, error, match):
    model = _mlp()
    before = get_bn_statistics(model)
    args = {"data": _data(), **kwargs}
    data = args.pop("data")
    with pytest.raises(error, match=match):
        estimate_bn_statistics(model, data, **args)
    after = get_bn_statistics(model)
    assert all(np.array_equal(after[k].mean, before[k].mean) for k in before)


@pytest.mark.parametrize("make, match", [
    (with_inference_mode, r"layer 'wrapped_bn' is held by 'frozen' \(InferenceMode\), which calls it inside"),
    (shared, r"layer 'twice' is called 2 times by the forward pass of .* Use one layer per call"),
    (subclassed, r"'custom' \(Subclassed\) is not a functional or Sequential model"),
])
@pytest.mark.parametrize("function", [estimate_bn_statistics, precise_bn])
def test_models_whose_bn_inputs_cannot_be_read_are_refused_untouched(make, match, function):
    model = make()
    before = get_bn_statistics(model)
    with pytest.raises(ValueError, match=match):
        function(model, _data()[:, :3])
    after = get_bn_statistics(model)
    assert all(np.array_equal(after[k].mean, before[k].mean) for k in before)


def test_forward_order_for_inference_and_walk_order_for_the_keys():
    """A nested Sequential with two BN layers: walk_layers lists them last to first, the forward pass
    calls them first to last; the keys keep the walk order, the re-estimation the forward order."""
    keras.utils.set_random_seed(0)
    inner = keras.Sequential([keras.Input((5,)), keras.layers.BatchNormalization(name="first"),
                              keras.layers.Dense(4, name="mix"), MomentsBatchNorm(name="second")], name="inner")
    inputs = keras.Input((5,))
    model = _trained(keras.Model(inputs, keras.layers.Dense(2)(inner(inputs))), _data(seed=8))
    x = _data(n=40)
    est = estimate_bn_statistics(model, x, batch_size=16)
    assert list(est) == [layer.path for layer in bn_layers(model)] == ["inner/second", "inner/first"]
    first, mix = inner.get_layer("first"), inner.get_layer("mix")
    np.testing.assert_allclose(est["inner/first"].mean, x.mean(axis=0), rtol=1e-5)
    set_bn_statistics(model, est)
    fed = np.asarray(mix(first(x, training=False)), dtype=np.float64)   # "first" already recalibrated
    np.testing.assert_allclose(est["inner/second"].mean, fed.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(est["inner/second"].variance, fed.var(axis=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("factory", [
    lambda: None,
    lambda: MomentsBatchNorm,
    lambda: (lambda: GhostBatchNormalization(virtual_batch_size=4)),
    lambda: (lambda: keras.layers.BatchNormalization(renorm=True)),
    lambda: noisy_batch_norm(seed=2),   # a nested Sequential(BN, NoisyShiftScale) per BN
], ids=["keras", "moments", "ghost", "renorm", "noisy"])
def test_build_mlp_variants_inference_statistics_are_those_of_the_recalibrated_network(factory):
    keras.utils.set_random_seed(0)
    model = _trained(build_mlp(5, 3, (6, 4), bn="pre", seed=0, norm_factory=factory()), _data(seed=9))
    x = _data(n=33)
    weights = [w.copy() for w in model.get_weights()]
    est = estimate_bn_statistics(model, x, batch_size=10)
    for w0, w1 in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(w0, w1)
    assert list(est) == [layer.path for layer in bn_layers(model)] and len(est) == 2
    set_bn_statistics(model, est)
    for i, path in enumerate(est):   # Dense(use_bias=False) feeds each BN: its input is dense_i's output
        fed = keras.Model(model.input, model.get_layer(f"dense_{i}").output)(x, training=False).numpy()
        np.testing.assert_allclose(est[path].mean, fed.mean(axis=0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(est[path].variance, fed.var(axis=0), rtol=1e-5, atol=1e-6)


def test_sequential_models_work():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Dense(4, name="d"), keras.layers.BatchNormalization(name="bn")],
                             name="seq")
    model(_data(n=1))   # built eagerly, on one example
    x = _data(n=20)
    est = estimate_bn_statistics(model, x, batch_size=6, upstream="train")
    fed = model.get_layer("d")(x).numpy()
    assert list(est) == ["seq/bn"]
    np.testing.assert_allclose(est["seq/bn"].mean, fed.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(est["seq/bn"].variance, fed.var(axis=0), rtol=1e-5, atol=1e-6)


def test_predict_with_batch_statistics_normalizes_each_batch_and_restores_the_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(inputs))
    x = np.random.default_rng(0).normal(5.0, 2.0, (10, 2)).astype("float32")
    before = get_bn_statistics(model)
    y = predict_with_batch_statistics(model, x, batch_size=4)
    assert y.shape == (10, 2)
    for start in (0, 4, 8):
        chunk = x[start:start + 4]
        expected = (chunk - chunk.mean(0)) / np.sqrt(chunk.var(0) + 1e-3)
        np.testing.assert_allclose(y[start:start + 4], expected, atol=1e-4)
    after = get_bn_statistics(model)
    assert all(np.array_equal(after[k].mean, before[k].mean) for k in before)
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        predict_with_batch_statistics(model, x, batch_size=0)


def test_precise_bn_repairs_nan_statistics():
    model = _trained(_mlp(), _data(seed=7))
    x = _data(n=30)
    expected = estimate_bn_statistics(model, x)
    for layer in bn_layers(model):
        layer.moving_mean.assign(np.full(layer.moving_mean.shape, np.nan, "float32"))
    assert np.all(np.isnan(model(x).numpy()))
    precise_bn(model, x)
    for k, v in get_bn_statistics(model).items():
        np.testing.assert_allclose(v.mean, expected[k].mean, rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(model(x).numpy()))
