"""bnhelpers.core.moving_average: the EMA recursion and its three closed forms."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bnhelpers.core.moving_average import drift_lag, ema, noise_factor, steps_to_forget

decays = st.floats(0.0, 0.995, exclude_max=False)


@given(decays, st.lists(st.floats(-100, 100), min_size=1, max_size=30), st.floats(-10, 10))
def test_ema_is_the_weighted_sum(decay, values, init):
    out = ema(values, decay, init=init)
    k = len(values)
    weights = (1 - decay) * decay ** np.arange(k - 1, -1, -1)
    expected = decay**k * init + np.dot(weights, values)
    assert out.shape == (k,)
    np.testing.assert_allclose(out[-1], expected, rtol=1e-9, atol=1e-9)


def test_ema_matches_keras_momentum_convention():
    # Keras: moving = momentum * moving + (1 - momentum) * batch value
    out = ema([4.0, 8.0], 0.5, init=0.0)
    np.testing.assert_allclose(out, [2.0, 5.0])
    vec = ema(np.ones((3, 2)) * [1.0, 3.0], 0.0, init=[7.0, 7.0])
    np.testing.assert_allclose(vec[0], [1.0, 3.0])


@given(decays, st.sampled_from([0.5, 0.1, 0.01, 1e-4]))
def test_warmup_is_the_first_step_below_tol(decay, tol):
    k = steps_to_forget(decay, tol)
    assert decay**k <= tol
    assert k == 1 or decay ** (k - 1) > tol


def test_warmup_values():
    assert steps_to_forget(0.5) == 7
    assert steps_to_forget(0.99) == 459
    assert steps_to_forget(0.0) == 1


@pytest.mark.parametrize("decay", [0.5, 0.9, 0.99])
def test_drift_lag_is_reached_on_a_ramp(decay):
    steps = np.arange(5000, dtype=float)
    out = ema(steps, decay, init=0.0)
    assert abs((steps[-1] - out[-1]) - drift_lag(decay)) < 1e-6


@pytest.mark.parametrize("decay", [0.5, 0.9, 0.99])
def test_noise_factor_matches_simulation(decay):
    rng = np.random.default_rng(0)
    values = rng.standard_normal((4000, 200))  # 200 independent series
    out = ema(values, decay, init=0.0)[-1]
    assert abs(out.std() / noise_factor(decay) - 1) < 0.15
    assert math.isclose(noise_factor(0.0), 1.0)


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5])
def test_bad_decay(bad):
    with pytest.raises(ValueError, match="decay"):
        ema([1.0], bad)
    with pytest.raises(ValueError, match="decay"):
        noise_factor(bad)


def test_bad_input():
    with pytest.raises(TypeError):
        drift_lag(True)
    with pytest.raises(ValueError, match="non-empty"):
        ema([], 0.5)
    with pytest.raises(ValueError, match="tol"):
        steps_to_forget(0.5, tol=0.0)
