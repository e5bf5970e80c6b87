"""bnhelpers.tools.folding: fold_batch_norm: folded models equal the originals in inference mode; clear errors otherwise."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bnhelpers.core import reference as ref
from bnhelpers.layers.batch_norm import MomentsBatchNorm
from bnhelpers.layers.walk import is_batch_norm
from bnhelpers.tools.folding import bn_parameters, fold_batch_norm, fold_into_kernel, foldable_pairs


def randomize_bn(model, seed=0):
    """Give every BN non-trivial gamma, beta and moving statistics."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if is_batch_norm(layer):
            c = layer.moving_mean.shape[0]
            values = {"gamma": rng.uniform(0.5, 2, c), "beta": rng.normal(0, 1, c),
                      "moving_mean": rng.normal(0, 1, c), "moving_variance": rng.uniform(0.5, 2, c)}
            for name, value in values.items():
                if getattr(layer, name, None) is not None:
                    getattr(layer, name).assign(value.astype(np.float32))
    return model


def assert_folds_exactly(model, x, call=None):
    folded = fold_batch_norm(model)
    assert not any(is_batch_norm(layer) for layer in folded.layers)
    call = call or (lambda m, v: m(v, training=False))
    expected, got = call(model, x), call(folded, x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    return folded


@st.composite
def random_models(draw):
    """A random Sequential dense or conv stack in which every Dense/Conv2D is followed by BN."""
    seed = draw(st.integers(0, 2**16))
    init = keras.initializers.GlorotUniform(seed=seed)
    bias_init = keras.initializers.RandomNormal(seed=seed + 1)
    conv = draw(st.booleans())
    bn_cls = draw(st.sampled_from([keras.layers.BatchNormalization, MomentsBatchNorm]))
    layers = [keras.Input((6, 6, 2) if conv else (5,))]
    for _ in range(draw(st.integers(1, 3))):
        width, bias = draw(st.integers(1, 6)), draw(st.booleans())
        if conv:
            layers.append(keras.layers.Conv2D(width, draw(st.sampled_from([1, 3])), padding="same",
                                              strides=draw(st.sampled_from([1, 2])), use_bias=bias,
                                              kernel_initializer=init, bias_initializer=bias_init))
        else:
            layers.append(keras.layers.Dense(width, use_bias=bias, kernel_initializer=init,
                                             bias_initializer=bias_init))
        layers.append(bn_cls(epsilon=draw(st.sampled_from([1e-5, 1e-3, 0.1]))))
        layers.append(keras.layers.Activation(draw(st.sampled_from(["relu", "tanh", "linear"]))))
    model = keras.Sequential(layers)
    x = np.random.default_rng(seed).normal(0, 1, (4, *model.inputs[0].shape[1:])).astype(np.float32)
    return randomize_bn(model, seed), x


@settings(max_examples=15)
@given(random_models())
def test_random_models_fold_to_the_same_outputs(model_and_x):
    model, x = model_and_x
    assert_folds_exactly(model, x)


def test_fold_into_kernel_is_algorithm_2_applied_to_the_layer():
    rng = np.random.default_rng(1)
    x, kernel, bias = rng.normal(size=(7, 4)), rng.normal(size=(4, 3)), rng.normal(size=3)
    gamma, beta, mean, var = rng.uniform(0.5, 2, 3), rng.normal(size=3), rng.normal(size=3), rng.uniform(0.5, 2, 3)
    k2, b2 = fold_into_kernel(kernel, bias, gamma, beta, mean, var, epsilon=1e-3)
    expected = ref.batchnorm_inference(x @ kernel + bias, gamma, beta, mean, var, epsilon=1e-3)
    np.testing.assert_allclose(x @ k2 + b2, expected, rtol=1e-12, atol=1e-12)
    k3, b3 = fold_into_kernel(kernel, None, gamma, beta, mean, var)
    np.testing.assert_allclose(x @ k3 + b3,
                               ref.batchnorm_inference(x @ kernel, gamma, beta, mean, var), atol=1e-12)


def test_fold_into_kernel_checks_shapes():
    with pytest.raises(ValueError, match=r"BN parameters have shape \(4,\), the kernel has 3 output channels"):
        fold_into_kernel(np.ones((2, 3)), None, *[np.ones(4)] * 4)
    with pytest.raises(ValueError, match=r"bias has shape \(2,\), expected \(3,\)"):
        fold_into_kernel(np.ones((2, 3)), np.ones(2), *[np.ones(3)] * 4)
    with pytest.raises(ValueError, match=r"kernel must have rank >= 2 with output channels last, got shape \(3,\)"):
        fold_into_kernel(np.ones(3), None, *[np.ones(3)] * 4)


def test_functional_model_with_branches_and_predict():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((8, 8, 3))
    a = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs))
    b = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 1)(inputs))
    h = keras.layers.ReLU()(keras.layers.Add()([a, b]))
    h = keras.layers.GlobalAveragePooling2D()(h)
    out = keras.layers.BatchNormalization(scale=False, center=False)(keras.layers.Dense(3)(h))
    model = randomize_bn(keras.Model(inputs, out), seed=3)
    x = np.random.default_rng(3).normal(0, 1, (5, 8, 8, 3)).astype(np.float32)
    folded = assert_folds_exactly(model, x, call=lambda m, v: m.predict(v, verbose=0))
    assert len(foldable_pairs(model)) == 3 and folded.name == f"{model.name}_folded"
    assert all(layer.use_bias for layer in folded.layers if isinstance(layer, keras.layers.Conv2D))


def test_dense_on_a_sequence_and_trained_statistics():
    keras.utils.set_random_seed(4)
    model = keras.Sequential([keras.Input((5, 6)), keras.layers.Dense(4, use_bias=False),
                              keras.layers.BatchNormalization(momentum=0.5), keras.layers.Dense(2)])
    x = np.random.default_rng(4).normal(3, 2, (8, 5, 6)).astype(np.float32)
    for _ in range(3):
        model(x, training=True)  # moving statistics move away from (0, 1)
    assert_folds_exactly(model, x)


def test_original_model_is_untouched():
    model = randomize_bn(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, use_bias=False),
                                           keras.layers.BatchNormalization()]))
    before = [w.copy() for w in model.get_weights()]
    folded = fold_batch_norm(model)
    folded.layers[-1].kernel.assign(np.zeros((3, 2), np.float32))
    assert not model.layers[0].use_bias
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def _seq(*layers, shape=(6,)):
    return keras.Sequential([keras.Input(shape), *layers])


@pytest.mark.parametrize("model_fn, message", [
    (lambda: _seq(keras.layers.Dense(4), keras.layers.ReLU(), keras.layers.BatchNormalization()),
     "follows ReLU"),
    (lambda: _seq(keras.layers.Dense(4, activation="relu"), keras.layers.BatchNormalization()),
     "activation 'relu'"),
    (lambda: _seq(keras.layers.BatchNormalization()), "does not follow a Dense or Conv2D"),
    (lambda: _seq(keras.layers.Conv2D(3, 1), keras.layers.BatchNormalization(axis=1), shape=(4, 4, 2)),
     "only per-channel BN"),
    (lambda: _seq(keras.layers.Conv2D(3, 1, data_format="channels_first"),
                  keras.layers.BatchNormalization(axis=1), shape=(2, 4, 4)), "channels_first"),
    (lambda: _seq(keras.layers.DepthwiseConv2D(3), keras.layers.BatchNormalization(), shape=(5, 5, 2)),
     "follows DepthwiseConv2D"),
])
def test_unfoldable_batch_norm_raises(model_fn, message):
    with pytest.raises(ValueError, match=message):
        fold_batch_norm(model_fn())


def test_producer_output_used_twice_raises():
    inputs = keras.Input((6,))
    h = keras.layers.Dense(5)(inputs)
    model = keras.Model(inputs, [keras.layers.BatchNormalization()(h), keras.layers.Dense(2)(h)])
    with pytest.raises(ValueError, match="also feeds another layer"):
        fold_batch_norm(model)
    # the same, hidden behind the second call of a shared layer
    other = keras.Input((5,))
    relu = keras.layers.ReLU()
    h = keras.layers.Dense(5)(inputs)
    model = keras.Model([inputs, other], [relu(other), relu(h), keras.layers.BatchNormalization()(h)])
    with pytest.raises(ValueError, match="also feeds another layer"):
        fold_batch_norm(model)


def test_shared_bn_and_nested_models_raise():
    inputs = keras.Input((4,))
    bn = keras.layers.BatchNormalization()
    shared = keras.Model(inputs, [bn(keras.layers.Dense(4)(inputs)), bn(keras.layers.Dense(4)(inputs))])
    with pytest.raises(ValueError, match=r"layer .* is shared \(called more than once\)"):
        fold_batch_norm(shared)
    inner = _seq(keras.layers.Dense(3), keras.layers.BatchNormalization(), shape=(4,))
    outer = keras.Model(inputs, inner(inputs))
    with pytest.raises(ValueError, match="nested model .* contains BN layers; fold it on its own"):
        fold_batch_norm(outer)


def test_bad_inputs():
    with pytest.raises(TypeError, match="expected a keras.Model, got Dense"):
        fold_batch_norm(keras.layers.Dense(3))
    with pytest.raises(ValueError, match="has no symbolic inputs: build it from keras.Input"):
        fold_batch_norm(keras.Sequential([keras.layers.Dense(3), keras.layers.BatchNormalization()]))


def test_bn_parameters_reads_a_built_layer_and_fills_in_missing_gamma_and_beta():
    layer = keras.layers.BatchNormalization(epsilon=0.01, center=False, scale=False)
    with pytest.raises(ValueError, match="BN layer .* is not built: call the model on data first"):
        bn_parameters(layer)
    layer.build((None, 3))
    layer.moving_mean.assign([1.0, 2.0, 3.0])
    gamma, beta, mean, variance, epsilon = bn_parameters(layer)
    np.testing.assert_array_equal(gamma, np.ones(3))
    np.testing.assert_array_equal(beta, np.zeros(3))
    np.testing.assert_array_equal(mean, [1.0, 2.0, 3.0])
    assert mean.dtype == variance.dtype == np.float64 and epsilon == pytest.approx(0.01)
    with pytest.raises(TypeError, match="expected a batch-normalization layer, got Dense"):
        bn_parameters(keras.layers.Dense(2))
