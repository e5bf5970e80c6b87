"""bnhelpers.tools.landscape: loss and gradient along the gradient direction (Santurkar et al.), checked against a direct computation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bnhelpers.tools.landscape import GradientDirectionProbe
from bnhelpers.models.mlp import build_mlp


def _setup(bn):
    model = build_mlp(6, 3, (8,), bn=bn, activation="relu", seed=1)
    rng = np.random.default_rng(0)
    return model, rng.normal(0, 1, (32, 6)).astype(np.float32), rng.integers(0, 3, 32)


def _direct(model, x, y, step_sizes):
    """The same measurements with a cloned model and eager tapes."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def loss_grad(weights):
        for v, w in zip(clone.trainable_variables, weights):
            v.assign(w)
        with tf.GradientTape() as tape:
            loss = loss_fn(y, clone(x, training=True))
        return float(loss), [g.numpy() for g in tape.gradient(loss, clone.trainable_variables)]

    w0 = [v.numpy() for v in model.trainable_variables]
    l0, g0 = loss_grad(w0)
    losses, changes = [], []
    for eta in step_sizes:
        l, g = loss_grad([w - eta * gw for w, gw in zip(w0, g0)])
        losses.append(l)
        changes.append(np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(g, g0))))
    return l0, np.sqrt(sum(np.sum(g ** 2) for g in g0)), np.array(losses), np.array(changes)


@pytest.mark.parametrize("bn", [None, "pre"])
def test_probe_matches_a_direct_computation_and_leaves_the_model_alone(bn):
    model, x, y = _setup(bn)
    steps = (0.05, 0.2, 1.0)
    before = [v.numpy().copy() for v in model.variables]
    probe = GradientDirectionProbe(model, x, y, step_sizes=steps)
    result = probe.measure()
    for v, b in zip(model.variables, before):
        np.testing.assert_array_equal(v.numpy(), b)
    l0, gnorm, losses, changes = _direct(model, x, y, steps)
    assert result["loss"] == pytest.approx(l0, rel=1e-5)
    assert result["grad_norm"] == pytest.approx(gnorm, rel=1e-4)
    np.testing.assert_allclose(result["losses"], losses, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result["grad_changes"], changes, rtol=1e-3, atol=1e-6)
    everything = np.append(losses, l0)
    assert result["loss_range"] == pytest.approx(everything.max() - everything.min(), rel=1e-3, abs=1e-6)
    assert result["beta"] == pytest.approx(np.max(changes / (np.array(steps) * gnorm)), rel=1e-3)
    np.testing.assert_allclose(probe(), [result[k] for k in GradientDirectionProbe.FIELDS])


def test_a_linear_model_is_smoother_than_its_curvature_bound():
    # softmax regression: the Hessian's largest eigenvalue is at most 1/2 * max ||x||^2
    linear = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    x = np.random.default_rng(2).normal(0, 1, (40, 6)).astype(np.float32)
    y = np.random.default_rng(3).integers(0, 3, 40)
    beta = GradientDirectionProbe(linear, x, y, step_sizes=(0.01, 0.1)).measure()["beta"]
    bound = 0.5 * np.max(np.sum(x ** 2, axis=1) + 1)      # +1 for the bias input
    assert 0 < beta <= bound


def test_probe_checks_its_input():
    model, x, y = _setup(None)
    with pytest.raises(ValueError, match=r"step_sizes must be a non-empty 1-D list of positive numbers, got \[\]"):
        GradientDirectionProbe(model, x, y, step_sizes=())
    with pytest.raises(ValueError, match=r"step_sizes must be a non-empty 1-D list of positive numbers, got \[ *0\.1 +-0\.1\]"):
        GradientDirectionProbe(model, x, y, step_sizes=(0.1, -0.1))
    with pytest.raises(ValueError, match=f"x and y disagree in length: {len(x)} vs {len(x) - 1}"):
        GradientDirectionProbe(model, x, y[:-1])
    probe = GradientDirectionProbe(model, x, y)
    with pytest.raises(ValueError, match="this probe was built for another model"):
        probe(_setup(None)[0])
