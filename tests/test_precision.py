"""bnhelpers.core.precision: variance algorithms in a chosen dtype, the rounding floor, errors against float64."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bnhelpers.core import precision as pr

ALGORITHMS = (pr.one_pass_variance, pr.two_pass_variance, pr.welford_variance)


@settings(deadline=None, max_examples=30)
@given(arrays(np.float64, st.tuples(st.integers(1, 20), st.integers(1, 5)),
              elements=st.floats(-100, 100, allow_nan=False, width=64)))
def test_in_float64_all_three_agree_with_numpy(x):
    expected = x.var(axis=0)
    scale = 1.0 + np.abs(x).max() ** 2
    for variance in ALGORITHMS:
        got = variance(x, "float64")
        assert got.dtype == np.float64 and got.shape == (x.shape[1],)
        np.testing.assert_allclose(got, expected, atol=1e-12 * scale)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_results_have_the_dtype_asked_for(dtype):
    x = np.random.default_rng(0).standard_normal((8, 3))
    for variance in ALGORITHMS:
        assert variance(x, dtype).dtype == pr.as_dtype(dtype)


def test_one_pass_cancels_catastrophically_and_two_passes_do_not():
    rng = np.random.default_rng(1)
    x = 1e4 + rng.standard_normal((256, 16))
    true = x.var(axis=0)
    one = pr.one_pass_variance(x, "float32").astype(np.float64)
    assert np.abs(one - true).max() > true.min()          # no correct digit left
    for variance in (pr.two_pass_variance, pr.welford_variance):
        assert np.abs(variance(x, "float32") - true).max() < 1e-2 * true.min()


def test_one_pass_can_be_negative():
    x = 100 + 0.01 * np.random.default_rng(0).standard_normal((256, 64))
    assert (pr.one_pass_variance(x, "float32") < 0).any()
    assert (pr.two_pass_variance(x, "float32") >= 0).all()


def test_float16_overflows_where_float32_does_not():
    x = np.full((4, 2), 300.0)
    one = pr.one_pass_variance(x, "float16")                  # x^2 = 9e4 > 65504
    assert not np.isfinite(one).any()
    assert np.array_equal(pr.two_pass_variance(x, "float32"), np.zeros(2, np.float32))
    many = np.full((300, 1), 300.0)                        # the running sum passes 65504 after 219 rows
    assert np.isinf(pr.two_pass_variance(many, "float16")).all()


def test_the_order_is_fixed_row_after_row():
    # 1 + 2^-24 rounds to 1 in float32, so adding the rows in order keeps the sum at 1 exactly;
    # adding the seven small rows first (pairwise, as many reductions do) would keep them
    x = np.array([[1.0]] + [[2.0 ** -24]] * 7, dtype=np.float32)
    assert pr._mean(x, np.dtype(np.float32))[0] == np.float32(1.0) / np.float32(8)


def test_unit_roundoff_and_floor():
    assert pr.unit_roundoff("float32") == 2.0 ** -24
    assert pr.unit_roundoff(np.float16) == 2.0 ** -11
    assert pr.unit_roundoff("bfloat16") == 2.0 ** -8
    assert pr.unit_roundoff(np.dtype("float64")) == 2.0 ** -53
    assert pr.rounding_floor(1e6, 2.0) == pytest.approx(1e6 * 2.0 ** -24 / 2)
    np.testing.assert_allclose(pr.rounding_floor([1.0, -10.0], 1.0, "float16"), [2.0 ** -11, 10 * 2.0 ** -11])


def test_floor_bounds_the_error_of_rounding_the_input():
    rng = np.random.default_rng(2)
    for mean in (1e3, 1e5):
        x = mean + rng.standard_normal(10_000)
        rounded = x.astype(np.float32).astype(np.float64)
        assert np.abs(rounded - x).max() <= pr.rounding_floor(mean + 10, 1.0)


def test_max_error():
    assert pr.max_error(np.float32([1, 2]), [1.0, 2.5]) == 0.5
    assert pr.max_error([np.nan, 1.0], [0.0, 1.0]) == float("inf")
    assert pr.max_error([np.inf], [0.0]) == float("inf")


@pytest.mark.parametrize("bad, match", [
    (np.ones(3), "shape"), (np.ones((0, 2)), "shape"), (np.ones((2, 2, 2)), "shape"),
])
def test_bad_inputs_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        pr.one_pass_variance(bad)


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError):
        pr.two_pass_variance(np.ones((2, 2), dtype=int))
    with pytest.raises(ValueError, match="dtype"):
        pr.welford_variance(np.ones((2, 2)), "int8")
    with pytest.raises(ValueError, match="dtype"):
        pr.unit_roundoff("float8")
    with pytest.raises(ValueError, match="std"):
        pr.rounding_floor(1.0, 0.0)
    with pytest.raises(ValueError, match="shape"):
        pr.max_error(np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match="empty"):
        pr.max_error(np.ones(0), np.ones(0))
