"""bnhelpers.layers.fused: FusedBatchNormalization equals keras.layers.BatchNormalization and the float64 reference.

float32 against Keras: 1e-5 (outputs of size ~1) and 1e-5 relative (statistics); against the NumPy float64
reference: 1e-4. float16 inputs: 1e-2 (half's unit roundoff is 4.9e-4, outputs are ~3 in size).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from bnhelpers.core.reference import batchnorm_backward, batchnorm_forward, batchnorm_inference
from bnhelpers.layers.fused import FusedBatchNormalization

SHAPES = {"dense": (8, 5), "sequence": (4, 3, 5), "nhwc": (4, 3, 3, 5), "volume": (2, 2, 3, 2, 5)}


def _weights(channels, seed=0):
    rng = np.random.default_rng(seed)
    return [w.astype(np.float32) for w in (rng.uniform(0.5, 2, channels), rng.normal(0, 1, channels),
                                           rng.normal(0, 1, channels), rng.uniform(0.5, 2, channels))]


def _pair(shape, momentum=0.9, seed=0, **kwargs):
    """Keras's layer and ours, built for ``shape`` and given the same (random) weights."""
    layers = []
    for cls in (keras.layers.BatchNormalization, FusedBatchNormalization):
        layer = cls(momentum=momentum, **kwargs)
        layer.build(shape)
        layer.set_weights(_weights(shape[-1], seed))
        layers.append(layer)
    return layers


def _batch(shape, seed, dtype=np.float32):
    return (3.0 + 2.0 * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


def test_weights_have_keras_names_order_shapes_and_dtypes():
    for kwargs in ({}, {"dtype": "mixed_float16"}, {"center": False}, {"scale": False}):
        keras_bn, ours = keras.layers.BatchNormalization(**kwargs), FusedBatchNormalization(**kwargs)
        keras_bn.build((None, 7))
        ours.build((None, 7))
        described = [[(w.name, tuple(w.shape), w.dtype, w.trainable) for w in layer.weights]
                     for layer in (keras_bn, ours)]
        print(kwargs, described[1])
        assert described[1] == described[0]


@pytest.mark.parametrize("kind", SHAPES)
def test_training_outputs_and_moving_statistics_match_keras_and_the_reference(kind):
    shape = SHAPES[kind]
    keras_bn, ours = _pair(shape)
    gamma, beta, mean, variance = (w.astype(np.float64) for w in _weights(shape[-1]))
    axes = tuple(range(len(shape) - 1))
    m = int(np.prod(shape[:-1]))
    for step in range(5):                                   # momentum 0.9, five different batches
        x = _batch(shape, step)
        y = ours(x, training=True).numpy()
        y_ref, _ = batchnorm_forward(x, gamma, beta, axes=axes)
        biased = x.astype(np.float64).var(axis=axes)        # Keras 3 averages the biased variance
        mean = 0.9 * mean + 0.1 * x.astype(np.float64).mean(axis=axes)
        variance = 0.9 * variance + 0.1 * biased
        errors = {"y vs keras": np.abs(y - keras_bn(x, training=True).numpy()).max(),
                  "y vs reference": np.abs(y - y_ref).max(),
                  "mean vs keras": np.abs(ours.moving_mean.numpy() - keras_bn.moving_mean.numpy()).max(),
                  "var vs keras": np.abs(ours.moving_variance.numpy() / keras_bn.moving_variance.numpy() - 1).max(),
                  "var vs reference": np.abs(ours.moving_variance.numpy() / variance - 1).max()}
        print(kind, step, {k: f"{v:.1e}" for k, v in errors.items()})
        assert errors["y vs keras"] < 1e-5 and errors["mean vs keras"] < 1e-5 and errors["var vs keras"] < 1e-5
        assert errors["y vs reference"] < 1e-4 and errors["var vs reference"] < 1e-5
    np.testing.assert_allclose(ours.moving_mean.numpy(), mean, rtol=1e-5, atol=1e-6)
    # The unbiased convention (the op's own output, tf-keras's fused layer) would be off by about m/(m-1):
    unbiased_gap = np.abs(ours.moving_variance.numpy() / (variance * m / (m - 1)) - 1).max()
    print(f"{kind}: m = {m}, relative gap to the unbiased convention {unbiased_gap:.1e}")
    assert unbiased_gap > 1e-3


@pytest.mark.parametrize("kind", ["dense", "nhwc"])
def test_inference_matches_keras_and_the_reference_and_changes_nothing(kind):
    shape = SHAPES[kind]
    keras_bn, ours = _pair(shape)
    gamma, beta, mean, variance = _weights(shape[-1])
    x = _batch(shape, 7)
    y_ref = batchnorm_inference(x, gamma, beta, mean, variance, axes=tuple(range(len(shape) - 1)))
    for training in (False, None):
        y = ours(x, training=training).numpy()
        gaps = np.abs(y - keras_bn(x, training=training).numpy()).max(), np.abs(y - y_ref).max()
        print(kind, training, f"vs keras {gaps[0]:.1e}, vs reference {gaps[1]:.1e}")
        assert gaps[0] < 1e-5 and gaps[1] < 1e-4
    for ours_w, original in zip(ours.get_weights(), _weights(shape[-1])):
        np.testing.assert_array_equal(ours_w, original)


def _gradients(layer, x, dy, training):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(y * dy)
    dx, dgamma, dbeta = tape.gradient(loss, [x, layer.gamma, layer.beta])
    return dx.numpy(), dgamma.numpy(), dbeta.numpy()


@pytest.mark.parametrize("kind", ["dense", "nhwc"])
@pytest.mark.parametrize("training", [True, False])
def test_gradients_match_keras_and_the_reference(kind, training):
    shape = SHAPES[kind]
    keras_bn, ours = _pair(shape)
    x, dy = _batch(shape, 1), np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    got, expected = _gradients(ours, x, dy, training), _gradients(keras_bn, x, dy, training)
    gamma, beta, mean, variance = (w.astype(np.float64) for w in _weights(shape[-1]))
    axes = tuple(range(len(shape) - 1))
    if training:
        reference = batchnorm_backward(dy, batchnorm_forward(x, gamma, beta, axes=axes)[1])
    else:
        inv_std = 1 / np.sqrt(variance + 1e-3)
        reference = (dy * gamma * inv_std, (dy * (x - mean) * inv_std).sum(axis=axes), dy.sum(axis=axes))
    for name, g, e, r in zip(("dx", "dgamma", "dbeta"), got, expected, reference):
        size = np.abs(r).max()
        print(kind, training, name, f"size {size:.2e}, vs keras {np.abs(g - e).max():.1e}, "
                                    f"vs reference {np.abs(g - r).max():.1e}")
        assert np.abs(g - e).max() <= 1e-5 * max(size, 1) and np.abs(g - r).max() <= 1e-4 * max(size, 1)


@pytest.mark.parametrize("kwargs", [{"center": False}, {"scale": False}])
def test_without_beta_or_gamma_matches_keras(kwargs):
    shape = SHAPES["nhwc"]
    layers = [cls(momentum=0.9, **kwargs) for cls in (keras.layers.BatchNormalization, FusedBatchNormalization)]
    weights = [w for w, name in zip(_weights(5), ("gamma", "beta", "mm", "mv"))
               if not (name == "gamma" and not kwargs.get("scale", True) or name == "beta" and "center" in kwargs)]
    for layer in layers:
        layer.build(shape)
        layer.set_weights(weights)
    x = _batch(shape, 3)
    for training in (True, False):
        gap = np.abs(layers[1](x, training=training).numpy() - layers[0](x, training=training).numpy()).max()
        print(kwargs, training, f"{gap:.1e}")
        assert gap < 1e-5


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_half_inputs_with_float32_statistics_match_keras(policy):
    shape = SHAPES["nhwc"]
    keras_bn, ours = _pair(shape, dtype=policy)
    half = np.float16 if policy == "mixed_float16" else tf.bfloat16.as_numpy_dtype
    # Relative to |y|: two units of roundoff of the output type (float16 2 ** -11, bfloat16 2 ** -8).
    tolerance = 2 * 2.0 ** -11 if policy == "mixed_float16" else 2 * 2.0 ** -8
    gamma, beta, mean, variance = (w.astype(np.float64) for w in _weights(5))
    axes = (0, 1, 2)
    for step in range(3):
        x = _batch(shape, step).astype(half)
        y = ours(x, training=True)
        assert y.dtype.name == policy.split("_")[1]
        assert [w.dtype for w in ours.weights] == ["float32"] * 4
        x64 = x.astype(np.float64)
        y_ref, _ = batchnorm_forward(x64, gamma, beta, axes=axes)
        mean = 0.9 * mean + 0.1 * x64.mean(axis=axes)
        variance = 0.9 * variance + 0.1 * x64.var(axis=axes)
        y_keras = keras_bn(x, training=True)
        gaps = {"y vs keras": np.abs(y.numpy().astype(np.float64) - y_keras.numpy().astype(np.float64)).max(),
                "y vs reference": np.abs(y.numpy().astype(np.float64) - y_ref).max(),
                "mean vs reference": np.abs(ours.moving_mean.numpy() - mean).max(),
                "var vs reference": np.abs(ours.moving_variance.numpy() / variance - 1).max()}
        size = np.abs(y_ref).max()
        print(policy, step, f"|y| max {size:.1f}", {k: f"{v:.1e}" for k, v in gaps.items()})
        assert gaps["y vs keras"] <= tolerance * size and gaps["y vs reference"] <= tolerance * size
        assert gaps["mean vs reference"] < 1e-5 and gaps["var vs reference"] < 1e-5   # float32 statistics
    y = ours(x, training=False).numpy().astype(np.float64)
    y_ref = batchnorm_inference(x64, gamma, beta, ours.moving_mean.numpy(), ours.moving_variance.numpy(), axes=axes)
    print(policy, f"inference: |y| max {np.abs(y_ref).max():.1f}, vs reference {np.abs(y - y_ref).max():.1e}")
    assert np.abs(y - y_ref).max() <= tolerance * np.abs(y_ref).max()


def test_trainable_false_always_runs_in_inference_mode():
    shape = SHAPES["nhwc"]
    keras_bn, ours = _pair(shape)
    keras_bn.trainable = ours.trainable = False
    x = _batch(shape, 4)
    expected = ours(x, training=False).numpy()
    y = ours(x, training=True).numpy()
    batch_mode = _pair(shape)[1](x, training=True).numpy()
    keras_gap = np.abs(y - keras_bn(x, training=True).numpy()).max()
    print(f"vs inference {np.abs(y - expected).max():.1e}, vs keras {keras_gap:.1e}, "
          f"batch-statistics output differs by {np.abs(batch_mode - expected).max():.2f}")
    assert np.abs(y - expected).max() == 0 and keras_gap < 1e-5
    assert np.abs(batch_mode - expected).max() > 0.1
    for ours_w, original in zip(ours.get_weights(), _weights(5)):
        np.testing.assert_array_equal(ours_w, original)


def test_trains_in_a_model_step_for_step_like_keras():
    rng = np.random.default_rng(0)
    x, y = rng.normal(2, 3, (32, 6)).astype(np.float32), rng.integers(0, 3, 32)

    def model(bn_cls):
        keras.utils.set_random_seed(1)
        return keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, use_bias=False), bn_cls(momentum=0.9),
                                 keras.layers.ReLU(), keras.layers.Dense(3)])

    models = [model(keras.layers.BatchNormalization), model(FusedBatchNormalization)]
    for m in models:
        m.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        m.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    gaps = [np.abs(a - b).max() for a, b in zip(models[0].get_weights(), models[1].get_weights())]
    print("weight gaps", [f"{g:.1e}" for g in gaps])
    assert len(gaps) == 7 and max(gaps) < 1e-5


def test_serialization_round_trip_and_keras_file(tmp_path):
    layer = FusedBatchNormalization(momentum=0.8, epsilon=1e-4, center=False, gamma_initializer="random_uniform",
                                    gamma_regularizer=keras.regularizers.L2(1e-3),
                                    gamma_constraint=keras.constraints.NonNeg(), name="fused")
    copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(copy) is FusedBatchNormalization
    assert copy.get_config() == layer.get_config()
    assert FusedBatchNormalization.from_config(layer.get_config()).get_config() == layer.get_config()
    # A Keras config (renorm=False, synchronized=False) loads into the fused layer.
    keras_config = keras.layers.BatchNormalization(momentum=0.8).get_config()
    assert FusedBatchNormalization.from_config(keras_config).momentum == 0.8

    inputs = keras.Input((3, 3, 5))
    model = keras.Model(inputs, FusedBatchNormalization(momentum=0.9, name="bn")(inputs))
    model.get_layer("bn").set_weights(_weights(5))
    x = _batch((4, 3, 3, 5), 5)
    model(x, training=True)                              # moves the statistics away from the weights set
    path = tmp_path / "fused.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.get_layer("bn")) is FusedBatchNormalization
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    gap = np.abs(loaded(x, training=False).numpy() - model(x, training=False).numpy()).max()
    print(f"loaded vs saved {gap:.1e}")
    assert gap == 0


@pytest.mark.parametrize("jit_compile", [False, True])
def test_inside_tf_function_and_xla_matches_eager(jit_compile):
    shape = SHAPES["nhwc"]
    eager, compiled = _pair(shape)[1], _pair(shape)[1]
    dy = tf.constant(np.random.default_rng(2).standard_normal(shape).astype(np.float32))

    def step(layer, x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True) * dy)
        return tape.gradient(loss, [x, layer.gamma, layer.beta])

    compiled_step = tf.function(lambda x: step(compiled, x), jit_compile=jit_compile)
    for seed in range(3):
        x = tf.constant(_batch(shape, seed))
        gaps = [np.abs(a.numpy() - b.numpy()).max() for a, b in zip(step(eager, x), compiled_step(x))]
        gaps += [np.abs(a - b).max() for a, b in zip(eager.get_weights(), compiled.get_weights())]
        print(f"jit_compile={jit_compile} step {seed}: {[f'{g:.1e}' for g in gaps]}")
        assert max(gaps) < 1e-4
    assert np.abs(compiled.moving_mean.numpy() - _weights(5)[2]).max() > 0.1   # the statistics did move


@settings(max_examples=15)
@given(rank=st.integers(2, 5), batch=st.integers(2, 5), channels=st.integers(1, 4), seed=st.integers(0, 2**31 - 1),
       offset=st.floats(-100, 100), scale=st.sampled_from([1e-2, 1.0, 30.0]))
def test_training_output_and_variance_match_the_reference_for_random_batches(rank, batch, channels, seed, offset,
                                                                               scale):
    rng = np.random.default_rng(seed)
    shape = (batch,) + tuple(rng.integers(1, 4, rank - 2)) + (channels,)
    x = (offset + scale * rng.standard_normal(shape)).astype(np.float32)
    layer = FusedBatchNormalization(momentum=0.5, epsilon=1e-3)
    y = layer(x, training=True).numpy()
    axes = tuple(range(rank - 1))
    y_ref, _ = batchnorm_forward(x, np.ones(channels), np.zeros(channels), axes=axes)
    variance = 0.5 + 0.5 * x.astype(np.float64).var(axis=axes)
    # float32 cancellation in x - mean: relative error ~ 1e-7 * |offset| / scale, amplified by 1/sqrt(var + eps)
    tolerance = 1e-4 + 1e-6 * abs(offset) / np.sqrt(scale**2 + 1e-3)
    assert np.abs(y - y_ref).max() <= tolerance, (np.abs(y - y_ref).max(), tolerance)
    np.testing.assert_allclose(layer.moving_variance.numpy(), variance, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("make, build_shape, error, match", [
    (lambda: FusedBatchNormalization(axis=1), (2, 3, 3, 4), ValueError, r"only the last axis \(axis=-1.*axis=1 for"),
    (lambda: FusedBatchNormalization(axis=-2), None, ValueError, r"only the last axis \(axis=-1, channels-last\), "
                                                                 r"got axis=-2"),
    (lambda: FusedBatchNormalization(axis=[3]), None, TypeError, r"axis must be an int, got \[3\]"),
    (lambda: FusedBatchNormalization(), (4,), ValueError, r"rank >= 2 \(N, \.\.\., C\), got shape \(4,\)"),
    (lambda: FusedBatchNormalization(), (2, None), ValueError, r"number of channels \(last axis\) must be known"),
    (lambda: FusedBatchNormalization(momentum=1.5), None, ValueError, r"momentum must be in \[0, 1\], got 1.5"),
    (lambda: FusedBatchNormalization(momentum="0.9"), None, TypeError, r"momentum must be a number"),
    (lambda: FusedBatchNormalization(epsilon=0), None, ValueError, r"epsilon must be > 0 in a layer"),
    (lambda: FusedBatchNormalization(epsilon=-1e-3), None, ValueError, r"epsilon must be a finite number >= 0"),
    (lambda: FusedBatchNormalization(dtype="float64"), None, TypeError,
     r"supports float32, float16, bfloat16 inputs; the layer's compute dtype is float64"),
    (lambda: FusedBatchNormalization(synchronized=True), None, ValueError, r"does not support synchronized=True"),
    (lambda: FusedBatchNormalization(renorm=True), None, ValueError, r"does not support renorm=True"),
])
def test_bad_arguments_raise_clear_errors(make, build_shape, error, match):
    with pytest.raises(error, match=match):
        make().build(build_shape)


def test_bad_inputs_raise_clear_errors():
    layer = FusedBatchNormalization()
    layer.build((None, 5))
    with pytest.raises(ValueError, match=r"built for 5 channels, got an input of shape \(2, 4\)"):
        layer(np.zeros((2, 4), np.float32))
    with pytest.raises(TypeError, match=r"inputs must be a floating-point array, got dtype int32"):
        layer.call(tf.zeros((2, 5), tf.int32))


def test_one_value_per_channel_and_plain_half_policies_match_keras():
    """m = 1: the op's unbiased variance is undefined; the stored (biased) one is 0, as in Keras.
    A plain ``"float16"``/``"bfloat16"`` policy keeps half variables; the layer casts them for the op."""
    for policy, shape in (("float32", (1, 3)), ("float32", (1, 1, 1, 3)), ("float16", (16, 4)), ("bfloat16", (16, 4))):
        layers = [cls(momentum=0.5, dtype=policy) for cls in (keras.layers.BatchNormalization, FusedBatchNormalization)]
        x = _batch(shape, 6)
        y = [tf.cast(layer(x, training=True), tf.float32).numpy() for layer in layers]
        variances = [layer.moving_variance.numpy().astype(np.float64) for layer in layers]
        print(policy, shape, f"y gap {np.abs(y[0] - y[1]).max():.1e}, moving variances {variances[1]}")
        assert [w.dtype for w in layers[1].weights] == [w.dtype for w in layers[0].weights]
        assert np.abs(y[0] - y[1]).max() <= 1e-2 * max(1.0, np.abs(y[0]).max())
        np.testing.assert_allclose(variances[1], variances[0], rtol=1e-2)
        if shape[0] == 1:
            np.testing.assert_array_equal(variances[1], 0.5)   # 0.5 * 1 + 0.5 * 0
