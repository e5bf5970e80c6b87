"""bnhelpers.tools.checks: detecting BN statistics that never move, and what trainable x training changes."""

import keras
import numpy as np
import pytest

from bnhelpers.tools.checks import (BNStatisticsNotUpdated, TrainingFlagProbe, changed, expect_bn_update,
                                    snapshot)
from bnhelpers.training.steps import sgd_step

X = np.random.default_rng(0).normal(2.0, 3.0, (16, 3)).astype("float32")


def _two_bn_model():
    """Dense -> BN "frozen_bn" -> Dense -> BN "live_bn"."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    h = keras.layers.BatchNormalization(name="frozen_bn")(keras.layers.Dense(4)(inputs))
    return keras.Model(inputs, keras.layers.BatchNormalization(name="live_bn")(keras.layers.Dense(4)(h)))


def test_expect_bn_update_passes_in_training_mode_and_fails_without(dense_bn_model):
    model = dense_bn_model()
    with expect_bn_update(model):
        sgd_step(model, X, training=True)
    with pytest.raises(BNStatisticsNotUpdated, match="training=True") as caught:
        with expect_bn_update(model):
            sgd_step(model, X, training=False)
    assert isinstance(caught.value, AssertionError) and "1 of 1" in str(caught.value)


def test_expect_bn_update_skips_frozen_layers():
    model = _two_bn_model()
    frozen = model.get_layer("frozen_bn")
    frozen.trainable = False
    before = snapshot(frozen)
    with expect_bn_update(model):                        # the frozen layer does not move, and that is no error
        sgd_step(model, X, training=True)
    assert not any(changed(before, snapshot(frozen)).values())
    with pytest.raises(BNStatisticsNotUpdated, match="1 of 1 BN layers did not change: .*live_bn") as caught:
        with expect_bn_update(model):                    # only the trainable layer is counted and named
            sgd_step(model, X, training=False)
    assert "frozen_bn" not in str(caught.value)
    frozen.trainable = True                              # control: not skipped, it is reported with the other
    with pytest.raises(BNStatisticsNotUpdated, match="2 of 2 BN layers did not change: .*frozen_bn"):
        with expect_bn_update(model):
            sgd_step(model, X, training=False)


def test_expect_bn_update_needs_one_trainable_bn_layer(dense_bn_model):
    model = dense_bn_model()
    model.get_layer("bn").trainable = False
    with pytest.raises(ValueError, match=r"every BN layer is frozen \(trainable=False\); nothing is expected"):
        with expect_bn_update(model):
            pass
    with pytest.raises(ValueError, match="'dense' has no built batch-normalization layer"):
        with expect_bn_update(model.get_layer("dense")):
            pass


def test_snapshot_and_changed(dense_bn_model):
    model = dense_bn_model()
    before = snapshot(model)
    assert {"dense/kernel", "bn/gamma", "bn/moving_mean"} <= set(before)
    sgd_step(model, X, training=False)
    moved = changed(before, snapshot(model))
    assert moved["dense/kernel"] and not moved["bn/moving_mean"]
    assert not any(changed(before, before).values())
    with pytest.raises(ValueError, match="the snapshots hold different variables"):
        changed(before, {})
    with pytest.raises(ValueError, match="atol must be >= 0, got -1"):
        changed(before, before, atol=-1)
    with pytest.raises(TypeError, match="expected a Keras layer or model, got int"):
        snapshot(3)


# (trainable, training) -> which of gamma, beta, moving_mean, moving_variance change in one SGD step.
# Keras 3: trainable=False means inference mode, whatever `training` says.
MATRIX = {
    (True, True): (True, True, True, True),
    (True, False): (True, True, False, False),
    (False, True): (False, False, False, False),
    (False, False): (False, False, False, False),
}


@pytest.mark.parametrize("trainable, training", sorted(MATRIX))
def test_trainable_training_matrix(trainable, training):
    layer = keras.layers.BatchNormalization(name="bn")
    layer.build((None, 3))
    layer.trainable = trainable
    before = snapshot(layer)
    out = layer(X, training=training).numpy()
    layer.moving_mean.assign(before["bn/moving_mean"])  # undo the forward call's update
    layer.moving_variance.assign(before["bn/moving_variance"])
    sgd_step(layer, X, y=np.ones_like(X), training=training)
    moved = changed(before, snapshot(layer))
    names = ("bn/gamma", "bn/beta", "bn/moving_mean", "bn/moving_variance")
    assert tuple(moved[n] for n in names) == MATRIX[(trainable, training)]
    uses_batch_statistics = np.allclose(out.mean(axis=0), 0.0, atol=1e-5)
    assert uses_batch_statistics == (trainable and training)


def test_training_flag_probe_sees_what_keras_passes():
    keras.utils.set_random_seed(0)
    probe = TrainingFlagProbe()
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(probe(inputs)))
    model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
    y = np.zeros((16, 1), "float32")
    probe.flags.clear()
    model.fit(X, y, batch_size=16, epochs=1, verbose=0)
    assert set(probe.flags) == {True}
    probe.flags.clear()
    model.evaluate(X, y, verbose=0)
    model.predict(X, verbose=0)
    assert set(probe.flags) == {False}
    probe.flags.clear()
    model(X)  # no flag at all: BN treats None like False
    assert probe.flags == [None]
    probe.flags.clear()
    model(X, training=True)
    assert probe.flags == [True]
