"""bnhelpers.tools.diagnostics: per-layer activation and gradient statistics and update-to-data ratios,
checked on small networks whose answers are known by hand, as a probe of the compiled loop, and for not
changing the model."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bnhelpers.models.mlp import build_mlp
from bnhelpers.tools.diagnostics import QUANTITIES, LayerRecorder, layer_statistics, unpack
from bnhelpers.training.compiled import CompiledTrainer, train_with_evaluation


def _linear_net(activation="linear", kernel=((1.0, 0.0), (0.0, 2.0))):
    """x (2,) -> Dense(2, W = kernel, no bias) -> activation -> Dense(1, ones, no bias)."""
    inputs = keras.Input((2,))
    h = keras.layers.Dense(2, use_bias=False, name="dense_0",
                           kernel_initializer=keras.initializers.Constant(np.array(kernel)))(inputs)
    h = keras.layers.Activation(activation, name="act_0")(h)
    out = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones", name="out")(h)
    return keras.Model(inputs, out)


def _mean_output(y, out):
    return tf.reduce_mean(out)


def test_known_answers_of_a_linear_network():
    model = _linear_net()
    x = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    stats = layer_statistics(model, x, np.zeros(2), learning_rate=0.1, loss_fn=_mean_output)
    assert set(stats) == set(QUANTITIES) and all(v.shape == (1,) for v in stats.values())
    # a = x W = [[1, 4], [3, 8]]
    np.testing.assert_allclose(stats["act_mean"], [4.0])
    np.testing.assert_allclose(stats["act_std"], [np.sqrt(6.5)])
    np.testing.assert_allclose(stats["saturated"], [1.0])            # every |a| > 0.97
    # loss = mean over the 2 examples of a_1 + a_2, so dloss/da = 1/2 everywhere
    np.testing.assert_allclose(stats["grad_mean"], [0.5])
    np.testing.assert_allclose(stats["grad_std"], [0.0], atol=1e-12)
    # dloss/dW = x^T dloss/da = [[2, 2], [3, 3]]; ||W|| = sqrt(5)
    np.testing.assert_allclose(stats["update_ratio"], [np.log10(0.1 * np.sqrt(26) / np.sqrt(5))], rtol=1e-6)


def test_saturated_share_of_tanh():
    model = _linear_net("tanh", kernel=((1.0, 0.0), (0.0, 1.0)))
    x = np.array([[3.0, 0.1], [0.0, -3.0]], dtype=np.float32)
    stats = layer_statistics(model, x, np.zeros(2), learning_rate=1.0, loss_fn=_mean_output)
    np.testing.assert_allclose(stats["saturated"], [0.5])             # tanh(+-3) = +-0.995
    stats = layer_statistics(model, x, np.zeros(2), learning_rate=1.0, loss_fn=_mean_output, saturation=0.999)
    np.testing.assert_allclose(stats["saturated"], [0.0])
    # dloss/da = 1/2 (the next layer's ones over 2 examples), whatever the activation
    np.testing.assert_allclose(stats["grad_mean"], [0.5])


def test_gradients_agree_with_a_tape_on_a_bn_network(tiny_classifier, classification_data):
    x, y = classification_data
    model = tiny_classifier(bn="pre")
    stats = layer_statistics(model, x, y, learning_rate=0.5)
    kernel = model.get_layer("dense_0").kernel
    act = keras.Model(model.input, model.get_layer("relu_0").output)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    before = [v.numpy().copy() for v in model.non_trainable_variables]
    with tf.GradientTape() as tape:
        a = act(x, training=True)
        loss = loss_fn(y, model.get_layer("logits")(a))
    g_a, g_w = tape.gradient(loss, [a, kernel])
    for v, b in zip(model.non_trainable_variables, before):   # restore what the direct call moved
        v.assign(b)
    np.testing.assert_allclose(stats["act_std"], [np.std(a.numpy())], rtol=1e-5)
    np.testing.assert_allclose(stats["grad_std"], [np.std(g_a.numpy())], rtol=1e-4)
    expected = np.log10(0.5 * np.linalg.norm(g_w.numpy()) / np.linalg.norm(kernel.numpy()))
    np.testing.assert_allclose(stats["update_ratio"], [expected], rtol=1e-5)


def test_recording_leaves_the_model_alone(tiny_classifier, classification_data):
    x, y = classification_data
    model = tiny_classifier(bn="pre")
    before = [v.numpy().copy() for v in model.variables]
    LayerRecorder(model, x, y, learning_rate=0.1)()
    for v, b in zip(model.variables, before):
        np.testing.assert_array_equal(v.numpy(), b)


def test_recorder_as_a_probe_of_the_compiled_loop(classification_data):
    x, y = classification_data
    model = build_mlp(6, 3, (5, 4, 3), bn="pre", activation="tanh", seed=0)
    trainer = CompiledTrainer(model, x, y, learning_rate=0.1)
    recorder = LayerRecorder(model, x[:16], y[:16], learning_rate=0.1)
    assert recorder.layer_names == ["tanh_0", "tanh_1", "tanh_2"]
    schedule = np.arange(40).reshape(5, 8) % len(x)
    record = train_with_evaluation(trainer, schedule, eval_every=2, probes={"layers": recorder})
    assert record["layers"].shape == (4, len(QUANTITIES), 3)          # probes at steps 0, 2, 4, 5
    stats = unpack(record["layers"])
    assert stats["act_std"].shape == (4, 3) and np.all(stats["act_std"] > 0)
    assert np.all((stats["saturated"] >= 0) & (stats["saturated"] <= 1))
    # the weights moved, so the recorded statistics changed between probes
    assert not np.allclose(stats["update_ratio"][0], stats["update_ratio"][-1])
    np.testing.assert_array_equal(recorder(model), recorder())


def test_bad_arguments(tiny_classifier, classification_data):
    x, y = classification_data
    model = tiny_classifier(bn=None)
    no_activation = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="no keras.layers.Activation"):
        LayerRecorder(no_activation, x, y, learning_rate=0.1)
    with pytest.raises(TypeError, match="keras.Model"):
        LayerRecorder("model", x, y, learning_rate=0.1)
    with pytest.raises(TypeError, match="float"):
        LayerRecorder(model, x.astype(int), y, learning_rate=0.1)
    with pytest.raises(ValueError, match="disagree"):
        LayerRecorder(model, x, y[:-1], learning_rate=0.1)
    for lr in (0.0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="learning_rate"):
            LayerRecorder(model, x, y, learning_rate=lr)
    for level in (0.0, 1.0, 2):
        with pytest.raises(ValueError, match="saturation"):
            LayerRecorder(model, x, y, learning_rate=0.1, saturation=level)
    with pytest.raises(TypeError, match="training"):
        LayerRecorder(model, x, y, learning_rate=0.1, training=1)
    recorder = LayerRecorder(model, x, y, learning_rate=0.1)
    with pytest.raises(ValueError, match="another model"):
        recorder(tiny_classifier(bn=None))
    with pytest.raises(ValueError, match="shape"):
        unpack(np.zeros((3, 4)))
