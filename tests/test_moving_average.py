"""bnhelpers.core.moving_average: the EMA recursion, one update in either convention, and its closed forms.

Momentum is Keras's (the weight of the old average), in [0, 1]: 1 is a valid momentum (the
average never moves) for ``ema``, ``ema_update``, ``initial_weight`` and ``noise_factor``, and
rejected by ``steps_to_forget`` and ``drift_lag``, which have no finite answer for it.
"""

import math

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bnhelpers.core.moving_average import drift_lag, ema, ema_update, initial_weight, noise_factor, steps_to_forget

momenta = st.floats(0.0, 1.0)
below_one = st.floats(0.0, 0.995)


@given(momenta, st.lists(st.floats(-100, 100), min_size=1, max_size=30), st.floats(-10, 10))
def test_ema_is_the_weighted_sum(momentum, values, init):
    out = ema(values, momentum, init=init)
    k = len(values)
    weights = (1 - momentum) * momentum ** np.arange(k - 1, -1, -1)
    expected = momentum**k * init + np.dot(weights, values)
    assert out.shape == (k,)
    np.testing.assert_allclose(out[-1], expected, rtol=1e-9, atol=1e-9)


def test_ema_matches_keras_momentum_convention():
    # Keras: moving = momentum * moving + (1 - momentum) * batch value
    out = ema([4.0, 8.0], 0.5, init=0.0)
    np.testing.assert_allclose(out, [2.0, 5.0])
    vec = ema(np.ones((3, 2)) * [1.0, 3.0], 0.0, init=[7.0, 7.0])
    np.testing.assert_allclose(vec[0], [1.0, 3.0])
    np.testing.assert_array_equal(ema([4.0, 8.0], 1.0, init=3.0), [3.0, 3.0])  # momentum 1: never moves


def test_ema_update_matches_keras_layer_and_documented_torch_rule():
    x = np.random.default_rng(0).normal(4.0, 1.0, (32, 2)).astype("float32")
    layer = keras.layers.BatchNormalization(momentum=0.9)
    layer(x, training=True)
    np.testing.assert_allclose(layer.moving_mean.numpy(), ema_update(0.0, x.mean(0), 0.9), rtol=1e-5)
    # PyTorch's documented rule: running = (1 - momentum) * running + momentum * batch
    assert ema_update(1.0, 3.0, 0.1, "torch") == pytest.approx(0.9 * 1.0 + 0.1 * 3.0)
    assert ema_update(1.0, 3.0, 1.0) == 1.0 and ema_update(1.0, 3.0, 1.0, "torch") == 3.0
    with pytest.raises(ValueError, match=r"convention must be one of \('keras', 'torch'\), got 'jax'"):
        ema_update(0, 1, 0.5, "jax")


@given(momenta, st.integers(0, 200))
def test_initial_weight_is_the_share_ema_leaves_to_the_initial_value(momentum, steps):
    share = initial_weight(momentum, steps)
    if steps:
        assert ema(np.zeros(steps), momentum, init=1.0)[-1] == pytest.approx(share, rel=1e-9, abs=1e-300)
    else:
        assert share == 1.0


def test_initial_weight_values_and_bad_steps():
    assert initial_weight(0.99, 100) == pytest.approx(0.366, abs=1e-3)
    assert initial_weight(1.0, 10) == 1.0
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="steps must be a non-negative int"):
            initial_weight(0.5, bad)


@given(below_one, st.sampled_from([0.5, 0.1, 0.01, 1e-4]))
def test_steps_to_forget_is_the_first_step_below_remaining(momentum, remaining):
    k = steps_to_forget(momentum, remaining)
    assert momentum**k <= remaining
    assert k == 1 or momentum ** (k - 1) > remaining


@given(st.floats(0.5, 0.999), st.floats(0.001, 0.5))
def test_steps_to_forget_brackets_the_threshold(momentum, remaining):
    steps = steps_to_forget(momentum, remaining)
    assert momentum**steps <= remaining < momentum ** (steps - 1)


def test_steps_to_forget_values():
    assert steps_to_forget(0.5) == 7
    assert steps_to_forget(0.99) == 459
    assert steps_to_forget(0.99, 0.01) == 459
    assert steps_to_forget(0.99, np.exp(-1)) == 100  # about 1 / (1 - m)
    assert steps_to_forget(0.0) == 1


def test_momentum_one_has_no_forgetting_time_and_no_drift_lag():
    with pytest.raises(ValueError, match="never forgets its initial value"):
        steps_to_forget(1.0)
    with pytest.raises(ValueError, match="momentum must be below 1 here"):
        drift_lag(1.0)
    assert noise_factor(1.0) == 0.0


@pytest.mark.parametrize("momentum", [0.5, 0.9, 0.99])
def test_drift_lag_is_reached_on_a_ramp(momentum):
    steps = np.arange(5000, dtype=float)
    out = ema(steps, momentum, init=0.0)
    assert abs((steps[-1] - out[-1]) - drift_lag(momentum)) < 1e-6


@pytest.mark.parametrize("momentum", [0.5, 0.9, 0.99])
def test_noise_factor_matches_simulation(momentum):
    rng = np.random.default_rng(0)
    values = rng.standard_normal((4000, 200))  # 200 independent series
    out = ema(values, momentum, init=0.0)[-1]
    assert abs(out.std() / noise_factor(momentum) - 1) < 0.15
    assert math.isclose(noise_factor(0.0), 1.0)


@pytest.mark.parametrize("function", [lambda m: ema([1.0], m), lambda m: ema_update(0.0, 1.0, m), noise_factor,
                                      drift_lag, steps_to_forget, lambda m: initial_weight(m, 3)])
@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_momentum_outside_zero_one_is_rejected_everywhere(function, bad):
    with pytest.raises(ValueError, match=rf"momentum must be in \[0, 1\], got {bad}"):
        function(bad)


def test_bad_input():
    with pytest.raises(TypeError, match="momentum must be a number, got True"):
        drift_lag(True)
    with pytest.raises(ValueError, match=r"values must be a non-empty series \(steps, \.\.\.\), got shape \(0,\)"):
        ema([], 0.5)
    with pytest.raises(ValueError, match=r"remaining must be in \(0, 1\), got 0.0"):
        steps_to_forget(0.5, remaining=0.0)
