"""Summaries over seeds, curve read-outs, percentile probes and Algorithm 2 statistics."""

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bnhelpers.core.reference import algorithm2_statistics
from bnhelpers.reporting.summaries import first_step_reaching, format_mean_sd, gap_recovered, mean_sd
from bnhelpers.reporting.tables import format_bound, format_table
from bnhelpers.tools.probes import LayerInputPercentiles, percentile_drift
from bnhelpers.models.mlp import build_mlp


def test_mean_sd_uses_the_sample_standard_deviation():
    m, s = mean_sd([1.0, 2.0, 3.0])
    assert m == 2.0 and s == 1.0
    m, s = mean_sd([[1.0, 5.0], [3.0, 5.0]])
    np.testing.assert_allclose(m, [2.0, 5.0])
    np.testing.assert_allclose(s, [np.sqrt(2), 0.0])
    assert mean_sd([4.0]) == (4.0, 0.0)
    with pytest.raises(ValueError):
        mean_sd([])


def test_format_bound_gives_the_next_power_of_ten():
    assert format_bound(6.5e-16) == "below 1e-15"
    assert format_bound(-1.8e-15) == "below 1e-14"
    assert format_bound(1e-15) == "below 1e-14"          # strictly above the value
    assert format_bound(0.5) == "below 1e0" and format_bound(123.0) == "below 1e3"
    assert format_bound(0.0) == "0"
    with pytest.raises(ValueError):
        format_bound(float("nan"))


def test_format_mean_sd():
    assert format_mean_sd([0.91, 0.93, 0.95], scale=100) == "93.0 ± 2.0"
    assert format_mean_sd([-0.001, 0.001], digits=1) == "0.0 ± 0.0"      # no "-0.0"
    assert format_mean_sd([200, 225, 250], digits=0) == "225 ± 25"
    assert format_mean_sd([100, np.inf, np.inf]) == "not reached in 2/3 seeds"
    with pytest.raises(ValueError):
        format_mean_sd([[1.0, 2.0]])


def test_first_step_reaching():
    steps = np.array([0, 25, 50, 75])
    assert first_step_reaching(steps, [0.1, 0.5, 0.95, 0.9], 0.9) == 50
    assert first_step_reaching(steps, [0.1, 0.5, 0.6, 0.9], 0.9) == 75
    assert first_step_reaching(steps, [0.1, 0.5, 0.6, 0.7], 0.9) == np.inf
    with pytest.raises(ValueError):
        first_step_reaching(steps, [0.1, 0.2], 0.5)


def test_gap_recovered():
    assert gap_recovered(0.90, 0.95, 1.00) == pytest.approx(0.5)
    np.testing.assert_allclose(gap_recovered([0.8, 0.9], [0.8, 1.0], [1.0, 1.0]), [0.0, 1.0])
    assert gap_recovered(0.9, 0.85, 1.0) < 0                              # made things worse
    with pytest.raises(ValueError):
        gap_recovered(0.9, 0.95, 0.9)


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
    with pytest.raises(ValueError):
        percentile_drift(np.zeros((5, 2, 4)))
    with pytest.raises(ValueError):
        percentile_drift(steady[:, ::-1])                 # high below low


@given(n_batches=st.integers(1, 6), m=st.integers(2, 9), channels=st.integers(1, 4), seed=st.integers(0, 999))
def test_algorithm2_statistics(n_batches, m, channels, seed):
    rng = np.random.default_rng(seed)
    batches = rng.normal(3.0, 2.0, (n_batches, m, channels))
    mean, var = algorithm2_statistics(batches)
    np.testing.assert_allclose(mean, np.mean([b.mean(axis=0) for b in batches], axis=0))
    np.testing.assert_allclose(var, np.mean([b.var(axis=0, ddof=1) for b in batches], axis=0))  # unbiased per batch
    assert mean.shape == var.shape == (channels,)


def test_algorithm2_statistics_rejects_bad_shapes():
    with pytest.raises(ValueError):
        algorithm2_statistics(np.zeros((4, 3)))
    with pytest.raises(ValueError):
        algorithm2_statistics(np.zeros((4, 1, 3)))


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
    with pytest.raises(ValueError):
        LayerInputPercentiles(model, "sigmoid_0", x, q=(50, 120))
    with pytest.raises(ValueError):
        probe(build_mlp(5, 2, (7,)))


def test_format_table():
    text = format_table(["a", "long header"], [[1, "x"], ["wide cell", 2.5]])
    lines = text.splitlines()
    assert lines[0] == "a         | long header"
    assert lines[1] == "----------+------------"
    assert lines[3] == "wide cell | 2.5"
    with pytest.raises(ValueError):
        format_table(["a", "b"], [[1]])
