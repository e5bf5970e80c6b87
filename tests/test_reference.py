"""bnhelpers.core.reference: the NumPy float64 reference: forward, backward, inference and Algorithm 2's statistics."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bnhelpers.core import reference as ref
from strategies import batches


def _count(shape, axes):
    return int(np.prod([shape[i] for i in axes]))


@given(batches())
def test_forward_normalizes_each_kept_position(case):
    x, axes, gamma, beta = case
    eps = 1e-3
    y, cache = ref.batchnorm_forward(x, np.ones_like(gamma), np.zeros_like(beta), axes, eps)
    var = x.var(axis=axes, keepdims=True)
    np.testing.assert_allclose(y.mean(axis=axes), 0.0, atol=1e-9)
    # Per position the output variance is var / (var + eps): 1 minus epsilon's share.
    np.testing.assert_allclose(y.var(axis=axes, keepdims=True), var / (var + eps), rtol=1e-9, atol=1e-12)
    assert cache.m == _count(x.shape, axes)


@given(batches())
def test_forward_matches_the_textbook_formula(case):
    x, axes, gamma, beta = case
    y, _ = ref.batchnorm_forward(x, gamma, beta, axes, epsilon=1e-5)
    keep = [1 if i in axes else s for i, s in enumerate(x.shape)]
    mu, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    expected = gamma.reshape(keep) * (x - mu) / np.sqrt(var + 1e-5) + beta.reshape(keep)
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)


@given(batches())
def test_gamma_and_beta_can_undo_the_normalization(case):
    x, axes, _, _ = case
    eps = 1e-3
    pshape = tuple(s for i, s in enumerate(x.shape) if i not in axes)
    mu = x.mean(axis=axes).reshape(pshape)
    var = x.var(axis=axes).reshape(pshape)
    y, _ = ref.batchnorm_forward(x, np.sqrt(var + eps), mu, axes, eps)
    np.testing.assert_allclose(y, x, rtol=1e-9, atol=1e-9 * (1 + np.abs(x).max()))


@given(batches())
def test_backward_matches_finite_differences_of_the_forward(case):
    x, axes, gamma, beta = case
    x = x[: min(3, x.shape[0])]  # keep the Jacobian small
    rng = np.random.default_rng(0)
    dy = rng.standard_normal(x.shape)
    _, cache = ref.batchnorm_forward(x, gamma, beta, axes)
    dx, dgamma, dbeta = ref.batchnorm_backward(dy, cache)

    def loss(x_, g_, b_):
        return float((ref.batchnorm_forward(x_, g_, b_, axes)[0] * dy).sum())

    h = 1e-6 * max(1.0, float(np.abs(x).max()))
    for arr, grad, step in ((x, dx, h), (gamma, dgamma, 1e-6), (beta, dbeta, 1e-6)):
        flat = arr.reshape(-1)
        for k in range(min(flat.size, 6)):
            old = flat[k]
            flat[k] = old + step
            up = loss(x, gamma, beta)
            flat[k] = old - step
            down = loss(x, gamma, beta)
            flat[k] = old
            numeric = (up - down) / (2 * step)
            scale = max(1.0, abs(numeric))
            assert abs(grad.reshape(-1)[k] - numeric) <= 1e-4 * scale


@given(batches())
def test_input_gradient_has_zero_sum_and_is_orthogonal_to_x_hat(case):
    """Exact for eps = 0; with eps > 0 the orthogonality is off by eps / (var + eps)."""
    x, axes, gamma, beta = case
    dy = np.random.default_rng(1).standard_normal(x.shape)
    _, cache = ref.batchnorm_forward(x, gamma, beta, axes, epsilon=0.0)
    dx, _, _ = ref.batchnorm_backward(dy, cache)
    scale = float(np.abs(cache.gamma * cache.inv_std).max() * np.abs(dy).max())  # size of the terms
    np.testing.assert_allclose(dx.sum(axis=axes) / scale, 0.0, atol=1e-9)
    np.testing.assert_allclose((dx * cache.x_hat).sum(axis=axes) / scale, 0.0, atol=1e-8)


@given(batches())
def test_inference_with_the_batch_statistics_equals_training_mode(case):
    x, axes, gamma, beta = case
    pshape = gamma.shape
    mean, var = x.mean(axis=axes).reshape(pshape), x.var(axis=axes).reshape(pshape)
    y_train, _ = ref.batchnorm_forward(x, gamma, beta, axes)
    y_infer = ref.batchnorm_inference(x, gamma, beta, mean, var, axes)
    np.testing.assert_allclose(y_infer, y_train, rtol=1e-9, atol=1e-9)


def test_inference_does_not_depend_on_the_rest_of_the_batch():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 3))
    args = (np.ones(3), np.zeros(3), np.full(3, 0.5), np.full(3, 2.0))
    alone = ref.batchnorm_inference(x[:1], *args)
    together = ref.batchnorm_inference(x, *args)
    np.testing.assert_array_equal(alone[0], together[0])


def test_affine_form_is_one_scale_and_shift_per_feature():
    scale, shift = ref.affine_form([2.0], [1.0], [3.0], [4.0 - 1e-3])
    np.testing.assert_allclose(scale, [1.0])
    np.testing.assert_allclose(shift, [-2.0])


def test_batch_of_one_outputs_beta_and_has_zero_input_gradient():
    x = np.array([[1.5, -2.0, 7.0]])
    beta = np.array([0.1, 0.2, 0.3])
    with pytest.warns(UserWarning, match="output will be beta"):
        y, cache = ref.batchnorm_forward(x, np.ones(3) * 3, beta)
    np.testing.assert_array_equal(y, beta[None])
    dx, _, _ = ref.batchnorm_backward(np.ones_like(x), cache)
    np.testing.assert_array_equal(dx, 0.0)


@given(n_batches=st.integers(1, 6), m=st.integers(2, 9), channels=st.integers(1, 4), seed=st.integers(0, 999))
def test_algorithm2_statistics(n_batches, m, channels, seed):
    rng = np.random.default_rng(seed)
    stack = rng.normal(3.0, 2.0, (n_batches, m, channels))
    mean, var = ref.algorithm2_statistics(stack)
    np.testing.assert_allclose(mean, np.mean([b.mean(axis=0) for b in stack], axis=0))
    np.testing.assert_allclose(var, np.mean([b.var(axis=0, ddof=1) for b in stack], axis=0))  # unbiased per batch
    assert mean.shape == var.shape == (channels,)


def test_algorithm2_statistics_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"batches must have shape \(n_batches, m, C\), got \(4, 3\)"):
        ref.algorithm2_statistics(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"need at least one batch of at least 2 examples, got \(4, 1, 3\)"):
        ref.algorithm2_statistics(np.zeros((4, 1, 3)))
