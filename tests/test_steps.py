"""bnhelpers.training.steps: the one gradient step, the optimizer table and chapter 5's plain SGD step."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bnhelpers.tools.checks import changed, snapshot
from bnhelpers.training.steps import OPTIMIZERS, gradient_step, make_optimizer, sgd_step

X = np.random.default_rng(0).normal(2.0, 3.0, (16, 3)).astype("float32")


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_gradient_step_equals_a_hand_written_tape_and_optimizer_step(name, tiny_classifier, classification_data):
    x, y = classification_data
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model, twin = tiny_classifier(), tiny_classifier()
    optimizer, twin_optimizer = make_optimizer(name, 0.05), make_optimizer(name, 0.05)
    for _ in range(3):
        loss = gradient_step(model, optimizer, loss_fn, x, y)
        with tf.GradientTape() as tape:
            expected = loss_fn(y, twin(x, training=True))
        grads = tape.gradient(expected, twin.trainable_variables)
        twin_optimizer.apply_gradients(zip(grads, twin.trainable_variables))
        assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    for a, b in zip(model.get_weights(), twin.get_weights()):      # BN moving statistics too
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_gradient_step_in_inference_mode_leaves_the_moving_statistics(tiny_classifier, classification_data):
    x, y = classification_data
    model = tiny_classifier()
    before = snapshot(model)
    gradient_step(model, make_optimizer("sgd", 0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  x, y, training=False)
    moved = changed(before, snapshot(model))
    assert moved["dense_0/kernel"] and not any(v for k, v in moved.items() if "moving" in k)


def test_gradient_step_runs_inside_tf_function(tiny_classifier, classification_data):
    x, y = classification_data
    model, twin = tiny_classifier(), tiny_classifier()
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    opt, twin_opt = make_optimizer("sgd", 0.1), make_optimizer("sgd", 0.1)
    compiled = tf.function(lambda xb, yb: gradient_step(model, opt, loss_fn, xb, yb))
    for _ in range(2):
        np.testing.assert_allclose(float(compiled(x, y)), float(gradient_step(twin, twin_opt, loss_fn, x, y)),
                                   rtol=1e-6)
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_sgd_step_on_a_frozen_model_returns_the_loss_and_changes_nothing(dense_bn_model):
    model = dense_bn_model()
    model.trainable = False
    before = snapshot(model)
    loss = sgd_step(model, X, training=True)
    assert loss == pytest.approx(float(tf.reduce_mean(model(X, training=False) ** 2)), rel=1e-6)
    assert loss > 0 and not any(changed(before, snapshot(model)).values())


def test_sgd_step_default_losses_and_arguments(dense_bn_model):
    model = dense_bn_model()
    out = model(X, training=True).numpy()
    assert sgd_step(dense_bn_model(), X, training=True) == pytest.approx(np.mean(out**2), rel=1e-5)
    target = np.ones((16, 4), "float32")
    assert sgd_step(dense_bn_model(), X, target, training=True) == pytest.approx(np.mean((out - 1) ** 2), rel=1e-5)
    loss = sgd_step(model, X, y=np.zeros((16, 4), "float32"), training=True,
                    loss_fn=lambda y, o: tf.reduce_sum((o - y) ** 2))
    assert loss == pytest.approx(np.sum(out**2), rel=1e-5)
    with pytest.raises(TypeError, match="training must be True or False, got None"):
        sgd_step(model, X, training=None)
    with pytest.raises(ValueError, match="learning_rate must be > 0, got 0.0"):
        sgd_step(model, X, training=True, learning_rate=0.0)


def test_make_optimizer():
    opt = make_optimizer("adam", 0.01)
    assert isinstance(opt, keras.optimizers.Adam) and float(opt.learning_rate) == pytest.approx(0.01)
    assert isinstance(make_optimizer("sgd", 1), keras.optimizers.SGD) and set(OPTIMIZERS) == {"sgd", "adam"}
    assert make_optimizer("sgd", 0.1) is not make_optimizer("sgd", 0.1)          # fresh each time
    with pytest.raises(ValueError, match=r"optimizer must be one of \['adam', 'sgd'\], got 'rmsprop'"):
        make_optimizer("rmsprop", 0.1)
    for bad in (0, -0.1, True):
        with pytest.raises(ValueError, match=f"learning_rate must be > 0, got {bad!r}"):
            make_optimizer("sgd", bad)
