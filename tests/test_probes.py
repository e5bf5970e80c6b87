"""bnhelpers.tools.probes: accuracy, pre-activations and the dead/saturated fractions (chapter 4),
layer-input percentiles and their drift (chapter 7), all measured without changing the model."""

import re

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bnhelpers.data import quadratic_regression
from bnhelpers.models.mlp import build_deep_regressor, build_mlp
from bnhelpers.tools.probes import (LayerInputPercentiles, accuracy, dead_relu_fraction, per_layer,
                                    percentile_drift, pre_activations, saturated_tanh_fraction)


def test_accuracy_in_training_mode_leaves_moving_statistics_alone(tiny_classifier, classification_data):
    x, y = classification_data
    model = tiny_classifier()
    before = [v.numpy().copy() for v in model.non_trainable_variables]
    a_train = accuracy(model, x, y, training=True)
    for v, b in zip(model.non_trainable_variables, before):
        np.testing.assert_array_equal(v.numpy(), b)
    logits = model(x, training=False).numpy()
    assert accuracy(model, x, y) == np.mean(logits.argmax(axis=1) == y)
    assert 0.0 <= a_train <= 1.0


def test_pre_activations_are_normalized_in_training_mode():
    x, _ = quadratic_regression(n=50, seed=0)
    model = build_deep_regressor("relu", bn=True, depth=3, width=7)
    zs = pre_activations(model, x, training=True)
    assert [z.shape for z in zs] == [(50, 7)] * 3
    for z in zs:  # gamma = 1, beta = 0 at initialization
        np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-4)
        # variance var / (var + eps) of the unnormalized unit: at most 1
        assert np.all(z.var(axis=0) < 1.001) and np.median(z.var(axis=0)) > 0.99
    plain = pre_activations(build_deep_regressor("tanh", depth=3, width=7), x)
    np.testing.assert_allclose(plain[0], x @ build_deep_regressor("tanh", depth=3, width=7)
                               .get_layer("dense_0").kernel.numpy(), rtol=1e-5, atol=1e-5)


def test_dead_and_saturated_fractions_on_known_arrays():
    z = np.array([[-1.0, 0.5, 0.0, -3.0], [-2.0, -0.5, 0.0, -1.0]])
    assert dead_relu_fraction(z) == 0.75  # columns 0, 2 and 3 are never positive
    assert per_layer(dead_relu_fraction, [z, -np.abs(z)]).tolist() == [0.75, 1.0]
    big = np.array([[5.0, 5.0, 0.0], [-6.0, 0.1, 0.0], [4.0, 3.0, 0.0]])
    assert saturated_tanh_fraction(big) == pytest.approx(1 / 3)  # only column 0 always has |tanh| >= 0.99
    assert saturated_tanh_fraction(big, min_share=0.6) == pytest.approx(2 / 3)


@given(arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 6)), elements=st.floats(-10, 10)))
def test_fractions_are_shares_of_units(z):
    for value in (dead_relu_fraction(z), saturated_tanh_fraction(z)):
        assert 0.0 <= value <= 1.0
        assert (value * z.shape[1]) == pytest.approx(round(value * z.shape[1]))
    assert dead_relu_fraction(np.abs(z) + 1e-3) == 0.0


@pytest.mark.parametrize("bad", [np.zeros(3), np.zeros((0, 2)), np.zeros((2, 2, 2))])
def test_fractions_reject_bad_shapes(bad):
    with pytest.raises(ValueError, match=r"z must have shape \(examples, units\), got " + re.escape(str(bad.shape))):
        dead_relu_fraction(bad)


def test_saturated_tanh_fraction_rejects_bad_level_and_share():
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\), got 1.0"):
        saturated_tanh_fraction(np.ones((2, 2)), level=1.0)
    with pytest.raises(ValueError, match=r"min_share must be in \(0, 1\], got 0"):
        saturated_tanh_fraction(np.ones((2, 2)), min_share=0)


def test_pre_activations_needs_activation_layers():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)], name="linear")
    with pytest.raises(ValueError, match="model 'linear' has no Activation layers"):
        pre_activations(model, np.zeros((3, 2)))


def test_percentile_drift():
    steady = np.tile(np.array([-1.0, 0.0, 1.0])[None, :, None], (5, 1, 4))
    d = percentile_drift(steady)
    np.testing.assert_allclose(d["median_travel"], 0.0)
    np.testing.assert_allclose(d["spread_ratio"], 1.0)
    moving = steady.copy()
    moving[:, 1] += np.arange(5)[:, None]                 # median walks to 4, spread stays 2
    moving[-1, 2] += 2                                    # last spread 4
    d = percentile_drift(moving)
    np.testing.assert_allclose(d["median_travel"], 4 / np.mean([2, 2, 2, 2, 4]))
    np.testing.assert_allclose(d["spread_ratio"], 2.0)
    with pytest.raises(ValueError, match=r"trace must have shape \(T >= 2, 3, units\), got \(5, 2, 4\)"):
        percentile_drift(np.zeros((5, 2, 4)))
    with pytest.raises(ValueError, match="percentiles must be ordered low, median, high"):
        percentile_drift(steady[:, ::-1])                 # high below low


def test_layer_input_percentiles_in_training_and_inference_mode():
    model = build_mlp(5, 2, (7,), bn="pre", activation="sigmoid", seed=0)
    x = np.random.default_rng(0).normal(2.0, 3.0, (200, 5)).astype(np.float32)
    before = [v.numpy().copy() for v in model.non_trainable_variables]
    probe = LayerInputPercentiles(model, "sigmoid_0", x, q=(15, 50, 85), training=True)
    values = probe.values()
    assert values.shape == (200, 7)
    np.testing.assert_allclose(values.mean(axis=0), 0.0, atol=1e-4)   # BN output, gamma 1, beta 0
    np.testing.assert_allclose(values.std(axis=0), 1.0, atol=0.01)
    p = probe()
    assert p.shape == (3, 7) and np.all(p[0] <= p[1]) and np.all(p[1] <= p[2])
    for v, b in zip(model.non_trainable_variables, before):            # moving statistics untouched
        np.testing.assert_array_equal(v.numpy(), b)
    inference = LayerInputPercentiles(model, "sigmoid_0", x, training=False).values()
    hidden = keras.Model(model.input, model.get_layer("dense_0").output)(x).numpy()
    np.testing.assert_allclose(inference, hidden / np.sqrt(1 + 1e-3), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"q must be percentiles in \[0, 100\], got \[ *50\. *120\.\]"):
        LayerInputPercentiles(model, "sigmoid_0", x, q=(50, 120))
    with pytest.raises(ValueError, match="this probe was built for another model"):
        probe(build_mlp(5, 2, (7,)))


def test_logits_accuracy_counts_argmax_hits_and_checks_shapes():
    from bnhelpers.tools.probes import logits_accuracy

    logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0], [4.0, 0.0, 0.0]])
    assert logits_accuracy(logits, [0, 1, 2, 1]) == 0.75
    with pytest.raises(ValueError, match="logits must be"):
        logits_accuracy(logits, [0, 1])
