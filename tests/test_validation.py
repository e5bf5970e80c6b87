"""bnhelpers.core.validation: every bad input gets a clear error, in the reference and the TensorFlow function alike,
and the shared checks (momentum, epsilon, positive counts) on their own."""

import re

import numpy as np
import pytest
import tensorflow as tf

from bnhelpers import BatchSizeOneWarning
from bnhelpers.core import reference as ref
from bnhelpers.core.moments import moments_batch_norm
from bnhelpers.core.validation import check_epsilon, check_momentum, check_positive_int, check_widths

G, B = np.ones(3), np.zeros(3)
FORWARDS = {
    "numpy": lambda x, g, b, axes=None: ref.batchnorm_forward(x, g, b, axes),
    "tensorflow": lambda x, g, b, axes=None: moments_batch_norm(
        tf.constant(x) if isinstance(x, np.ndarray) else x, g, b, axes),
}


@pytest.fixture(params=FORWARDS)
def forward(request):
    return FORWARDS[request.param]


@pytest.mark.parametrize("x, axes, error, match", [
    (np.ones(3), None, ValueError, "expected rank >= 2, got rank 1"),
    (np.ones((4, 3)), (0, 2), ValueError, "axis 2 is out of range for a rank-2 input"),
    (np.ones((4, 3)), (1,), ValueError, r"the batch axis 0 must be among the reduced axes, got \(1,\)"),
    (np.ones((4, 3)), (0, 0), ValueError, r"axes contain a repeated axis: \(0, 0\)"),
    (np.ones((4, 3)), (0.0,), TypeError, "axes must be integers, got 0.0"),
    (np.ones((4, 3), dtype=np.int32), None, TypeError, "x must be a floating-point array, got dtype int32"),
    (np.ones((0, 3)), None, ValueError, r"empty batch: x has shape \(0, 3\)"),
])
def test_bad_x_or_axes(forward, x, axes, error, match):
    with pytest.raises(error, match=match):
        forward(x, G, B, axes)


@pytest.mark.parametrize("gamma, beta, name", [(np.ones(4), B, "gamma"), (G, np.zeros((1, 3)), "beta")])
def test_parameter_shape_mismatch(forward, gamma, beta, name):
    with pytest.raises(ValueError, match=f"{name} has shape"):
        forward(np.ones((4, 3)), gamma, beta)


def test_integer_gamma_is_rejected():
    with pytest.raises(TypeError, match="gamma must be a floating-point"):
        ref.batchnorm_forward(np.ones((4, 3)), np.ones(3, dtype=int), B)


def test_batch_of_one_warns_that_the_output_is_beta(forward):
    with pytest.warns(BatchSizeOneWarning, match="output will be beta"):
        forward(np.ones((1, 3)), G, B)


def test_no_warning_when_statistics_also_span_space(recwarn):
    ref.batchnorm_forward(np.random.default_rng(0).standard_normal((1, 4, 4, 3)), G, B)
    assert not [w for w in recwarn if issubclass(w.category, BatchSizeOneWarning)]


def test_inference_mode_has_no_batch_size_warning(recwarn):
    ref.batchnorm_inference(np.ones((1, 3)), G, B, np.zeros(3), np.ones(3))
    assert not [w for w in recwarn if issubclass(w.category, BatchSizeOneWarning)]


def test_negative_variance_is_rejected():
    with pytest.raises(ValueError, match="non-negative"):
        ref.affine_form(G, B, np.zeros(3), -np.ones(3))


def test_epsilon_zero_is_allowed_and_negative_epsilon_rejected():
    x = np.random.default_rng(0).standard_normal((4, 3))
    without = ref.batchnorm_forward(x, G, B, epsilon=0.0)[0]
    np.testing.assert_allclose(without.std(axis=0), 1.0, rtol=1e-12)        # exactly unit variance with epsilon 0
    out = moments_batch_norm(tf.constant(x), G, B, epsilon=0.0)
    np.testing.assert_allclose(out[0].numpy(), without, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="epsilon must be a finite number >= 0, got -1"):
        ref.batchnorm_forward(x, G, B, epsilon=-1)
    with pytest.raises(ValueError, match="epsilon must be a finite number >= 0, got -1"):
        moments_batch_norm(tf.constant(x), G, B, epsilon=-1)


@pytest.mark.parametrize("value", [0, 0.0, 1, 0.99, np.float32(0.5), np.int64(1)])
def test_check_momentum_accepts_zero_to_one_and_returns_a_float(value):
    out = check_momentum(value)
    assert type(out) is float and out == float(value)


@pytest.mark.parametrize("value, error, match", [
    (-0.01, ValueError, r"momentum must be in \[0, 1\], got -0.01"),
    (1.01, ValueError, r"momentum must be in \[0, 1\], got 1.01"),
    (float("nan"), ValueError, r"momentum must be in \[0, 1\], got nan"),
    (True, TypeError, "momentum must be a number, got True"),
    ("0.9", TypeError, "momentum must be a number, got '0.9'"),
    (None, TypeError, "momentum must be a number, got None"),
])
def test_check_momentum_rejects(value, error, match):
    with pytest.raises(error, match=match):
        check_momentum(value)
    with pytest.raises(error, match=match.replace("momentum", "decay")):
        check_momentum(value, name="decay")


@pytest.mark.parametrize("value", [0, 0.0, 1e-3, 5, np.float32(1e-5)])
def test_check_epsilon_accepts_finite_non_negative_numbers(value):
    out = check_epsilon(value)
    assert type(out) is float and out == float(value)


@pytest.mark.parametrize("value, error, match", [
    (-1e-9, ValueError, "epsilon must be a finite number >= 0, got -1e-09"),
    (float("inf"), ValueError, "epsilon must be a finite number >= 0, got inf"),
    (float("nan"), ValueError, "epsilon must be a finite number >= 0, got nan"),
    (False, TypeError, "epsilon must be a number, got False"),
    ("1e-3", TypeError, "epsilon must be a number, got '1e-3'"),
])
def test_check_epsilon_rejects(value, error, match):
    with pytest.raises(error, match=match):
        check_epsilon(value)
    with pytest.raises(error, match=match.replace("epsilon", "eps")):
        check_epsilon(value, name="eps")


def test_check_positive_int_names_the_first_bad_argument():
    assert check_positive_int(n=1, batch_size=np.int64(3)) is None
    assert check_positive_int() is None
    for bad in (0, -2, 1.0, True, "3", None):
        with pytest.raises(ValueError, match=f"steps must be a positive int, got {re.escape(repr(bad))}"):
            check_positive_int(n=4, steps=bad)
    with pytest.raises(ValueError, match="n must be a positive int, got 0"):
        check_positive_int(n=0, steps=0)


def test_backward_rejects_a_gradient_of_the_wrong_shape():
    _, cache = ref.batchnorm_forward(np.random.default_rng(0).standard_normal((4, 3)), G, B)
    with pytest.raises(ValueError, match="dy has shape"):
        ref.batchnorm_backward(np.ones((4, 2)), cache)


def test_check_widths_returns_a_tuple_of_ints():
    assert check_widths([3, np.int64(5)]) == (3, 5) and type(check_widths((4,))[0]) is int
    assert check_widths(range(1, 3)) == (1, 2)


@pytest.mark.parametrize("bad", [(), [0], [2, -1], [2.0], [True], None, 5])
def test_check_widths_rejects(bad):
    with pytest.raises(ValueError, match=re.escape(f"widths must be a ") + "(non-empty )?" +
                       re.escape(f"list of positive ints, got {bad!r}")):
        check_widths(bad)
