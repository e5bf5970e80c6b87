"""bnhelpers.core.conventions: the converters between Keras's and PyTorch's conventions, checked mathematically.

The moving-average update itself is tested in test_moving_average.py; what a Keras version
measurably does, in test_keras_versions.py.
"""

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bnhelpers.core import conventions as cv
from bnhelpers.core.moving_average import ema_update, initial_weight

momenta = st.floats(0.0, 1.0, allow_nan=False)


@given(momenta)
def test_momentum_converters_are_inverse(m):
    assert cv.torch_to_keras_momentum(cv.keras_to_torch_momentum(m)) == pytest.approx(m, abs=1e-12)


@given(momenta, st.floats(-10, 10), st.floats(-10, 10))
def test_converted_momentum_gives_the_same_update(m, old, new):
    keras_side = ema_update(old, new, m, "keras")
    torch_side = ema_update(old, new, cv.keras_to_torch_momentum(m), "torch")
    assert keras_side == pytest.approx(torch_side, abs=1e-9)


@given(st.integers(2, 10_000), st.floats(0.0, 1e6))
def test_variance_converters_are_inverse_and_match_numpy(count, scale):
    assert cv.unbiased_to_biased(cv.biased_to_unbiased(scale, count), count) == pytest.approx(scale, rel=1e-12)
    x = np.random.default_rng(count).standard_normal(min(count, 300))
    m = len(x)
    if m >= 2:
        assert cv.biased_to_unbiased(x.var(), m) == pytest.approx(x.var(ddof=1), rel=1e-12)


def test_moving_average_of_unbiased_variances_converts_except_for_the_initial_share():
    rng = np.random.default_rng(1)
    m, momentum, steps = 8, 0.9, 50
    biased_avg = unbiased_avg = 1.0
    for _ in range(steps):
        batch = rng.normal(0.0, 2.0, m)
        biased_avg = ema_update(biased_avg, batch.var(), momentum)
        unbiased_avg = ema_update(unbiased_avg, batch.var(ddof=1), momentum)
    share = initial_weight(momentum, steps)
    # unbiased_avg = share * 1 + m/(m-1) * (biased_avg - share * 1)
    assert unbiased_avg == pytest.approx(share + cv.biased_to_unbiased(biased_avg - share, m), rel=1e-10)


@pytest.mark.parametrize("bad", [1, 0, True, 2.5])
def test_variance_converters_reject_bad_counts(bad):
    error, match = (TypeError, "count must be an int") if isinstance(bad, (bool, float)) else \
        (ValueError, "count must be >= 2")
    with pytest.raises(error, match=match):
        cv.biased_to_unbiased(1.0, bad)


def test_config_translation():
    assert cv.keras_to_torch_config({}) == {"momentum": pytest.approx(0.01), "eps": 1e-3}
    back = cv.torch_to_keras_config({}, "channels_first")
    assert back == {"momentum": pytest.approx(0.9), "epsilon": 1e-5, "axis": 1}
    with pytest.raises(ValueError, match="cumulative"):
        cv.torch_to_keras_config({"momentum": None})
    with pytest.raises(ValueError, match=r"unsupported keys \['axis'\]; expected momentum, epsilon"):
        cv.keras_to_torch_config({"axis": 1})
    with pytest.raises(ValueError, match=r"epsilon must be > 0, got 0"):
        cv.keras_to_torch_config({"epsilon": 0})
    with pytest.raises(ValueError, match=r"eps must be > 0, got -1"):
        cv.torch_to_keras_config({"eps": -1})
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\], got 1.5"):
        cv.keras_to_torch_momentum(1.5)
    with pytest.raises(TypeError, match="momentum must be a number, got '0.9'"):
        cv.keras_to_torch_momentum("0.9")


def test_axes_and_channels_first_layer_equals_channels_last():
    assert cv.reduction_axes(4) == (0, 1, 2) and cv.reduction_axes(4, "channels_first") == (0, 2, 3)
    assert cv.reduction_axes(2, "channels_first") == (0,)
    with pytest.raises(ValueError, match="data_format must be one of .*got 'nhwc'"):
        cv.channel_axis("nhwc")
    with pytest.raises(ValueError, match="rank must be an int >= 2, got 1"):
        cv.reduction_axes(1)
    x = np.random.default_rng(2).normal(1.0, 3.0, (4, 3, 5, 5)).astype("float32")
    first = keras.layers.BatchNormalization(axis=cv.channel_axis("channels_first"))
    last = keras.layers.BatchNormalization(axis=cv.channel_axis("channels_last"))
    y_first = first(x, training=True).numpy()
    y_last = last(np.transpose(x, (0, 2, 3, 1)), training=True).numpy()
    np.testing.assert_allclose(y_first, np.transpose(y_last, (0, 3, 1, 2)), atol=1e-5)
    np.testing.assert_allclose(first.moving_variance.numpy(), last.moving_variance.numpy(), rtol=1e-5)
