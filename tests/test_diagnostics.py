"""bnhelpers.tools.probes: the deep net of chapter 4 (Morvan Zhou's tutorial), its training loops and the per-layer fractions."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bnhelpers.data import quadratic_regression
from bnhelpers.models.mlp import build_deep_regressor
from bnhelpers.tools.probes import dead_relu_fraction, per_layer, pre_activations, saturated_tanh_fraction
from bnhelpers.training.regression import fit_regression, refresh_statistics
from bnhelpers.layers.batch_norm import MomentsBatchNorm


def _types(model):
    return [type(layer).__name__ for layer in model.layers[1:]]


def test_deep_regressor_structure_and_shared_initial_kernels():
    plain = build_deep_regressor("tanh", depth=3, width=5, seed=2)
    normed = build_deep_regressor("tanh", bn=True, depth=3, width=5, seed=2, momentum=0.7)
    assert _types(plain) == ["Dense", "Activation"] * 3 + ["Dense"]
    assert _types(normed) == ["Dense", "MomentsBatchNorm", "Activation"] * 3 + ["Dense"]
    assert all(l.momentum == 0.7 for l in normed.layers if isinstance(l, MomentsBatchNorm))
    for name in ("dense_0", "dense_1", "dense_2", "logits"):
        np.testing.assert_array_equal(plain.get_layer(name).kernel.numpy(), normed.get_layer(name).kernel.numpy())
    wide = build_deep_regressor("relu", depth=1, width=400, init_std=1.0)
    assert abs(wide.get_layer("logits").kernel.numpy().std() - 1.0) < 0.1


@pytest.mark.parametrize("kwargs", [{"activation": "sigmoid"}, {"depth": 0}, {"init_std": 0.0}])
def test_deep_regressor_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        build_deep_regressor(**kwargs)


def test_fit_regression_learns_and_is_reproducible():
    x, y = quadratic_regression(n=64, seed=0)
    losses = []
    for _ in range(2):
        model = build_deep_regressor("relu", bn=True, depth=2, width=8, seed=1)
        losses.append(fit_regression(model, x, y, steps=40, learning_rate=0.05, batch_size=16, seed=3))
    assert losses[0].shape == (40,)
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    assert losses[0][-5:].mean() < 0.5 * losses[0][:5].mean()


def test_fit_regression_full_batch_is_batch_size_n():
    x, y = quadratic_regression(n=32, seed=0)
    runs = []
    for batch_size in (None, 32):
        model = build_deep_regressor("tanh", depth=2, width=4, seed=0, init_std=0.3)
        runs.append(fit_regression(model, x, y, steps=5, learning_rate=0.01, optimizer="sgd",
                                   batch_size=batch_size))
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-6)


@pytest.mark.parametrize("kwargs,match", [({"steps": 0}, "steps"), ({"learning_rate": 0.0}, "learning_rate"),
                                          ({"optimizer": "rmsprop"}, "optimizer"), ({"batch_size": 99}, "batch_size")])
def test_fit_regression_bad_arguments(kwargs, match):
    x, y = quadratic_regression(n=8)
    args = {"steps": 1, "learning_rate": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        fit_regression(build_deep_regressor(depth=1, width=2), x, y, **args)


def test_refresh_statistics_moves_only_the_moving_statistics():
    x, y = quadratic_regression(n=40, seed=0)
    model = build_deep_regressor("relu", bn=True, depth=2, width=6, momentum=0.5)
    trainable = [w.numpy().copy() for w in model.trainable_weights]
    moving = [w.numpy().copy() for w in model.non_trainable_weights]
    errors = refresh_statistics(model, x, y, batch_size=10, steps=3)
    assert errors.shape == (3,) and np.all(np.isfinite(errors))
    for before, after in zip(trainable, model.trainable_weights):
        np.testing.assert_array_equal(before, after.numpy())
    assert any(not np.allclose(b, a.numpy()) for b, a in zip(moving, model.non_trainable_weights))
    with pytest.raises(ValueError):
        refresh_statistics(model, x, y, batch_size=0, steps=1)


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
    with pytest.raises(ValueError, match="shape"):
        dead_relu_fraction(bad)
    with pytest.raises(ValueError):
        saturated_tanh_fraction(np.ones((2, 2)), level=1.0)
