"""Every bad input gets a clear error, in the reference and the TensorFlow function alike."""

import numpy as np
import pytest
import tensorflow as tf

from bnhelpers import BatchSizeOneWarning
from bnhelpers.core import reference as ref
from bnhelpers.core.moments import moments_batch_norm

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
    (np.ones(3), None, ValueError, "rank"),
    (np.ones((4, 3)), (0, 2), ValueError, "out of range"),
    (np.ones((4, 3)), (1,), ValueError, "batch axis 0"),
    (np.ones((4, 3)), (0, 0), ValueError, "repeated"),
    (np.ones((4, 3)), (0.0,), TypeError, "integers"),
    (np.ones((4, 3), dtype=np.int32), None, TypeError, "floating-point"),
    (np.ones((0, 3)), None, ValueError, "empty batch"),
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


def test_negative_variance_and_bad_epsilon():
    with pytest.raises(ValueError, match="non-negative"):
        ref.affine_form(G, B, np.zeros(3), -np.ones(3))
    with pytest.raises(ValueError, match="eps"):
        ref.batchnorm_forward(np.ones((4, 3)), G, B, epsilon=-1)
    with pytest.raises(ValueError, match="epsilon"):
        moments_batch_norm(tf.ones((4, 3)), G, B, epsilon=0.0)


def test_backward_rejects_a_gradient_of_the_wrong_shape():
    _, cache = ref.batchnorm_forward(np.random.default_rng(0).standard_normal((4, 3)), G, B)
    with pytest.raises(ValueError, match="dy has shape"):
        ref.batchnorm_backward(np.ones((4, 2)), cache)
