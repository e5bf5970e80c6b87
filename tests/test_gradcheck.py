"""bnhelpers.core.gradcheck: centered finite differences and the relative error, on functions whose
gradients are known (quadratic, sin, matrix product, softmax), including a wrong gradient it must catch."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bnhelpers.core import reference as ref
from bnhelpers.core.gradcheck import numerical_gradient, numerical_gradient_array, relative_error

RNG = np.random.default_rng(0)


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@given(arrays(np.float64, st.integers(1, 12), elements=st.floats(-10, 10)))
def test_quadratic(x):
    num = numerical_gradient(lambda v: np.sum(v**2), x)
    # centered differences are exact for a quadratic up to round-off of |f| ~ 1e3 over h = 1e-5
    np.testing.assert_allclose(num, 2 * x, atol=1e-6)


def test_sin_of_a_matrix():
    x = RNG.uniform(-3, 3, (4, 5))
    num = numerical_gradient(lambda v: np.sum(np.sin(v)), x)
    assert num.shape == x.shape
    assert relative_error(num, np.cos(x)) < 1e-9


def test_matrix_product_with_an_upstream_gradient():
    w, x = RNG.normal(size=(3, 4)), RNG.normal(size=(4, 6))
    dout = RNG.normal(size=(3, 6))
    assert relative_error(numerical_gradient_array(lambda v: v @ x, w, dout), dout @ x.T) < 1e-9
    assert relative_error(numerical_gradient_array(lambda v: w @ v, x, dout), w.T @ dout) < 1e-9


def test_softmax_vector_jacobian_product():
    z, dout = RNG.normal(size=(5, 7)), RNG.normal(size=(5, 7))
    s = _softmax(z)
    analytic = s * (dout - np.sum(dout * s, axis=-1, keepdims=True))
    assert relative_error(numerical_gradient_array(_softmax, z, dout), analytic) < 1e-8


def test_catches_a_wrong_gradient():
    z, dout = RNG.normal(size=(5, 7)), RNG.normal(size=(5, 7))
    s = _softmax(z)
    wrong = s * dout                                   # forgets the coupling term of the softmax
    num = numerical_gradient_array(_softmax, z, dout)
    assert relative_error(num, wrong) > 1e-2
    x = RNG.uniform(-3, 3, 6)
    assert relative_error(numerical_gradient(lambda v: np.sum(np.sin(v)), x), -np.cos(x)) == pytest.approx(1.0)


def test_batch_norm_backward_of_the_reference():
    x, dy = RNG.normal(2, 3, (8, 3)), RNG.normal(size=(8, 3))
    gamma, beta = RNG.uniform(0.5, 2, 3), RNG.normal(size=3)
    _, cache = ref.batchnorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = ref.batchnorm_backward(dy, cache)
    assert relative_error(numerical_gradient_array(lambda v: ref.batchnorm_forward(v, gamma, beta)[0], x, dy),
                          dx) < 1e-8
    assert relative_error(numerical_gradient_array(lambda g: ref.batchnorm_forward(x, g, beta)[0], gamma, dy),
                          dgamma) < 1e-8
    assert relative_error(numerical_gradient_array(lambda b: ref.batchnorm_forward(x, gamma, b)[0], beta, dy),
                          dbeta) < 1e-8


def test_x_is_not_modified_and_f_gets_float64():
    x = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    seen = []

    def f(v):
        seen.append(v.dtype)
        v *= 2                                          # f may scribble on its argument
        return v.sum()

    grad = numerical_gradient(f, x)
    np.testing.assert_array_equal(x, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(grad, 2.0, rtol=1e-9)
    assert grad.dtype == np.float64 and set(seen) == {np.dtype(np.float64)}


def test_relative_error_known_values():
    a = np.array([1.0, -2.0, 4.0])
    assert relative_error(a, a) == 0.0
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(a, -a) == 1.0
    assert relative_error(a, a + [0.0, 0.0, 1e-6]) == pytest.approx(1e-6 / (8 + 1e-6), rel=1e-12)
    # normwise: an error in a near-zero entry is measured against the largest entries
    assert relative_error([1.0, 1e-12], [1.0, 2e-12]) == pytest.approx(1e-12 / 2, rel=1e-6)
    assert relative_error(a, a[::-1].copy()) == relative_error(a[::-1].copy(), a)


def test_bad_arguments():
    x = np.ones(3)
    with pytest.raises(TypeError, match="callable"):
        numerical_gradient(3.0, x)
    with pytest.raises(TypeError, match="floating-point"):
        numerical_gradient(np.sum, np.arange(3))
    with pytest.raises(ValueError, match="h must be"):
        numerical_gradient(np.sum, x, h=0.0)
    with pytest.raises(ValueError, match="h must be"):
        numerical_gradient(np.sum, x, h=float("nan"))
    with pytest.raises(TypeError, match="h must be a number"):
        numerical_gradient(np.sum, x, h="1e-5")
    with pytest.raises(ValueError, match="finite"):
        numerical_gradient(np.sum, np.array([1.0, np.inf]))
    with pytest.raises(ValueError, match="scalar"):
        numerical_gradient(lambda v: v * 2, x)
    with pytest.raises(ValueError, match="dout has shape"):
        numerical_gradient_array(lambda v: v * 2, x, np.ones(4))
    with pytest.raises(TypeError, match="floating-point"):
        numerical_gradient_array(lambda v: v * 2, x, np.ones(3, dtype=int))
    with pytest.raises(ValueError, match="one shape"):
        relative_error(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="empty"):
        relative_error(np.ones(0), np.ones(0))
    with pytest.raises(ValueError, match="finite"):
        relative_error(np.array([np.nan]), np.array([1.0]))
    with pytest.raises(ValueError, match="tiny"):
        relative_error(x, x, tiny=0.0)
