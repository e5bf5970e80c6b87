"""bnhelpers.reporting.summaries: summaries over seeds and read-outs of training curves."""

import numpy as np
import pytest

from bnhelpers.reporting.summaries import first_step_reaching, format_mean_sd, gap_recovered, mean_sd


def test_mean_sd_uses_the_sample_standard_deviation():
    m, s = mean_sd([1.0, 2.0, 3.0])
    assert m == 2.0 and s == 1.0
    m, s = mean_sd([[1.0, 5.0], [3.0, 5.0]])
    np.testing.assert_allclose(m, [2.0, 5.0])
    np.testing.assert_allclose(s, [np.sqrt(2), 0.0])
    assert mean_sd([4.0]) == (4.0, 0.0)
    with pytest.raises(ValueError, match="need at least one value"):
        mean_sd([])


def test_format_mean_sd():
    assert format_mean_sd([0.91, 0.93, 0.95], scale=100) == "93.0 ± 2.0"
    assert format_mean_sd([-0.001, 0.001], digits=1) == "0.0 ± 0.0"      # no "-0.0"
    assert format_mean_sd([200, 225, 250], digits=0) == "225 ± 25"
    assert format_mean_sd([100, np.inf, np.inf]) == "not reached in 2/3 seeds"
    with pytest.raises(ValueError, match=r"values must be 1-D \(one per seed\), got shape \(1, 2\)"):
        format_mean_sd([[1.0, 2.0]])


def test_first_step_reaching():
    steps = np.array([0, 25, 50, 75])
    assert first_step_reaching(steps, [0.1, 0.5, 0.95, 0.9], 0.9) == 50
    assert first_step_reaching(steps, [0.1, 0.5, 0.6, 0.9], 0.9) == 75
    assert first_step_reaching(steps, [0.1, 0.5, 0.6, 0.7], 0.9) == np.inf
    with pytest.raises(ValueError, match=r"steps and values must be 1-D of one length, got \(4,\) and \(2,\)"):
        first_step_reaching(steps, [0.1, 0.2], 0.5)


def test_gap_recovered():
    assert gap_recovered(0.90, 0.95, 1.00) == pytest.approx(0.5)
    np.testing.assert_allclose(gap_recovered([0.8, 0.9], [0.8, 1.0], [1.0, 1.0]), [0.0, 1.0])
    assert gap_recovered(0.9, 0.85, 1.0) < 0                              # made things worse
    with pytest.raises(ValueError, match="broken and reference are equal: there is no gap to recover"):
        gap_recovered(0.9, 0.95, 0.9)
