"""bnhelpers.core.moments: the tf.nn.moments implementation against the NumPy reference, and gradients three ways."""

import numpy as np
import tensorflow as tf
from hypothesis import given, settings

from bnhelpers.core import reference as ref
from bnhelpers.core.moments import moments_batch_norm, moments_batch_norm_inference
from strategies import batches


@given(batches())
def test_float64_training_mode_matches_reference(case):
    x, axes, gamma, beta = case
    y, mean, var = moments_batch_norm(tf.constant(x), gamma, beta, axes)
    expected, _ = ref.batchnorm_forward(x, gamma, beta, axes)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(mean.numpy(), x.mean(axis=axes).reshape(gamma.shape), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(var.numpy(), x.var(axis=axes).reshape(gamma.shape), rtol=1e-9, atol=1e-12)


@given(batches())
def test_float32_inference_mode_matches_reference(case):
    x, axes, gamma, beta = case
    mean = np.zeros_like(gamma) + 0.5
    var = np.ones_like(gamma) * 2.0
    x32 = x.astype(np.float32)
    y = moments_batch_norm_inference(tf.constant(x32), gamma, beta, mean, var, axes)
    expected = ref.batchnorm_inference(x32, gamma, beta, mean, var, axes)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-4 * (1 + np.abs(expected).max()))


def test_float32_feature_with_large_mean_and_tiny_spread():
    """Mean 1e4, std 1e-2: two-pass moments stay accurate where E[x^2] - E[x]^2 collapses."""
    rng = np.random.default_rng(0)
    x32 = (1e4 + 1e-2 * rng.standard_normal((256, 1))).astype(np.float32)
    y, _, var = moments_batch_norm(tf.constant(x32), np.ones(1), np.zeros(1), epsilon=1e-8)
    expected, _ = ref.batchnorm_forward(x32, np.ones(1), np.zeros(1), epsilon=1e-8)
    # float32 resolves 1e4 only to ~1e-3, so a few per cent of one standard deviation.
    np.testing.assert_allclose(y.numpy(), expected, atol=0.05)
    np.testing.assert_allclose(var.numpy(), x32.astype(np.float64).var(), rtol=0.05)
    true_var = x32.astype(np.float64).var()
    naive = float(tf.reduce_mean(x32**2) - tf.reduce_mean(x32) ** 2)
    assert abs(naive - true_var) > 0.5 * true_var  # one-pass formula: no correct digit left


@settings(max_examples=15)
@given(batches(max_rank=3))
def test_reference_backward_matches_gradient_tape(case):
    x, axes, gamma, beta = case
    dy = np.random.default_rng(2).standard_normal(x.shape)
    xt, gt, bt = (tf.Variable(v) for v in (x, gamma, beta))
    with tf.GradientTape() as tape:
        y, _, _ = moments_batch_norm(xt, gt, bt, axes)
        loss = tf.reduce_sum(y * dy)
    tdx, tdg, tdb = tape.gradient(loss, [xt, gt, bt])
    _, cache = ref.batchnorm_forward(x, gamma, beta, axes)
    dx, dgamma, dbeta = ref.batchnorm_backward(dy, cache)
    scale = 1 + np.abs(dx).max()
    np.testing.assert_allclose(dx, tdx.numpy(), atol=1e-9 * scale)
    np.testing.assert_allclose(dgamma, tdg.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(dbeta, tdb.numpy(), rtol=1e-9, atol=1e-9)


def test_reference_backward_matches_tf_compute_gradient():
    """Finite differences from tf.test.compute_gradient: dx = dy^T J."""
    rng = np.random.default_rng(3)
    for shape, axes in (((5, 3), (0,)), ((3, 2, 2, 2), (0, 1, 2))):
        x = rng.standard_normal(shape) * 3 + 1
        gamma = rng.uniform(0.5, 2, shape[-1])
        beta = rng.standard_normal(shape[-1])
        f = lambda v: moments_batch_norm(v, gamma, beta, axes)[0]  # noqa: E731
        (theoretical,), (numerical,) = tf.test.compute_gradient(f, [tf.constant(x)], delta=1e-5)
        dy = rng.standard_normal(shape)
        _, cache = ref.batchnorm_forward(x, gamma, beta, axes)
        dx, _, _ = ref.batchnorm_backward(dy, cache)
        np.testing.assert_allclose(dy.reshape(-1) @ numerical, dx.reshape(-1), atol=1e-6)
        np.testing.assert_allclose(theoretical, numerical, atol=1e-6)
