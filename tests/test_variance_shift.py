"""bnhelpers.tools.variance_shift: dropout's variance formula and BN inputs measured in inference mode."""

import keras
import numpy as np
import pytest

from bnhelpers.tools.population import BNStatistics, estimate_bn_statistics, get_bn_statistics, set_bn_statistics
from bnhelpers.tools.variance_shift import dropout_variance, inference_input_statistics, variance_ratios


def _model(seed=0):
    """Dense -> Dropout(0.5) -> BN -> Dense -> BN -> Dense, with moving statistics far from their initial values."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(6, activation="relu"),
                              keras.layers.Dropout(0.5, seed=seed), keras.layers.BatchNormalization(name="bn_a"),
                              keras.layers.Dense(4), keras.layers.BatchNormalization(name="bn_b"),
                              keras.layers.Dense(2)], name="net")
    stats = {"net/bn_a": BNStatistics(np.full(6, 0.3), np.full(6, 2.5)),
             "net/bn_b": BNStatistics(np.full(4, -0.2), np.full(4, 4.0))}
    set_bn_statistics(model, stats)
    return model


def _data(n=50, seed=1):
    return np.random.default_rng(seed).normal(1.0, 2.0, (n, 5)).astype("float32")


def test_dropout_variance_matches_many_masks():
    rng = np.random.default_rng(0)
    h = np.maximum(rng.normal(0.5, 1.0, (200_000, 3)), 0) * np.array([1.0, 2.0, 0.5])
    for rate in (0.0, 0.2, 0.5):
        y = h * (rng.random(h.shape) >= rate) / (1 - rate)
        np.testing.assert_allclose(y.var(axis=0), dropout_variance(h.mean(axis=0), h.var(axis=0), rate), rtol=0.02)
    np.testing.assert_allclose(dropout_variance(2.0, 1.0, 0.5), (1.0 + 0.5 * 4.0) / 0.5)
    np.testing.assert_array_equal(dropout_variance([0.0, 1.0], [3.0, 3.0], 0.0), [3.0, 3.0])
    assert dropout_variance(0.0, 1.0, 0.5) == 2.0          # a centred unit: exactly 1 / (1 - p)


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5])
def test_dropout_variance_refuses_bad_rates(rate):
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        dropout_variance(0.0, 1.0, rate)


def test_dropout_variance_refuses_negative_variance():
    with pytest.raises(ValueError, match="variance must be non-negative"):
        dropout_variance(0.0, -1.0, 0.5)


def test_inference_input_statistics_use_the_models_own_inference_mode():
    model, x = _model(), _data()
    seen = inference_input_statistics(model, x, batch_size=7)
    assert list(seen) == ["net/bn_a", "net/bn_b"]
    for name in ("bn_a", "bn_b"):
        inputs = keras.Model(model.inputs[0], model.get_layer(name).input)(x, training=False).numpy().astype(np.float64)
        name = f"net/{name}"
        np.testing.assert_allclose(seen[name].mean, inputs.mean(axis=0), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(seen[name].variance, inputs.var(axis=0), rtol=1e-6, atol=1e-7)
    # unlike estimate_bn_statistics(upstream="inference"), bn_a keeps its moving statistics upstream of bn_b
    recalibrated = estimate_bn_statistics(model, x, upstream="inference")
    np.testing.assert_allclose(recalibrated["net/bn_a"].variance, seen["net/bn_a"].variance, rtol=1e-6)
    assert np.max(np.abs(recalibrated["net/bn_b"].variance / seen["net/bn_b"].variance - 1)) > 0.1
    # nothing changed, and the batch size does not matter
    assert get_bn_statistics(model)["net/bn_a"].variance[0] == pytest.approx(2.5)
    whole = inference_input_statistics(model, x, batch_size=1000)
    np.testing.assert_allclose(whole["net/bn_b"].variance, seen["net/bn_b"].variance, rtol=1e-6)


def test_variance_ratios_divide_moving_by_inference_variance():
    model, x = _model(), _data()
    ratios, seen = variance_ratios(model, x), inference_input_statistics(model, x)
    np.testing.assert_allclose(ratios["net/bn_a"], 2.5 / seen["net/bn_a"].variance)
    np.testing.assert_allclose(ratios["net/bn_b"], 4.0 / seen["net/bn_b"].variance)
    dead = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, kernel_initializer="zeros"),
                             keras.layers.BatchNormalization()])
    assert np.all(np.isinf(list(variance_ratios(dead, x[:, :2]).values())[0]))


def test_statistics_follow_the_channel_axis():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3, 4)), keras.layers.BatchNormalization(axis=1)])
    x = np.random.default_rng(2).normal(0, 1, (10, 3, 4)) * np.array([1.0, 2.0, 3.0])[:, None]
    seen = list(inference_input_statistics(model, x).values())[0]
    values = np.moveaxis(x, 1, -1).reshape(-1, 3)
    np.testing.assert_allclose(seen.variance, values.var(axis=0), rtol=1e-6)


def test_bad_arguments():
    model = _model()
    with pytest.raises(ValueError, match="x is empty"):
        inference_input_statistics(model, np.zeros((0, 5)))
    with pytest.raises(ValueError, match="batch_size"):
        inference_input_statistics(model, _data(), batch_size=0)
