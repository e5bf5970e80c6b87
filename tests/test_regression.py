"""bnhelpers.training.regression: chapter 4's regression loop (Morvan Zhou's tutorial) and refreshing BN statistics."""

import numpy as np
import pytest

from bnhelpers.data import quadratic_regression
from bnhelpers.models.mlp import build_deep_regressor
from bnhelpers.training.regression import fit_regression, refresh_statistics


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


@pytest.mark.parametrize("kwargs,match", [({"steps": 0}, "steps must be >= 1, got 0"),
                                          ({"learning_rate": 0.0}, "learning_rate must be > 0, got 0.0"),
                                          ({"optimizer": "rmsprop"}, "optimizer must be one of .*got 'rmsprop'"),
                                          ({"batch_size": 99}, r"batch_size must be in \[1, 8\], got 99")])
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
    with pytest.raises(ValueError, match="need 1 <= batch_size <= 40 and steps >= 1"):
        refresh_statistics(model, x, y, batch_size=0, steps=1)
    with pytest.raises(ValueError, match="x and y disagree in length: 40 vs 39"):
        refresh_statistics(model, x, y[:-1], batch_size=4, steps=1)
