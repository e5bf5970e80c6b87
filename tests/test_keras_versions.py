"""bnhelpers.tools.keras_versions: what a Keras version measurably does with BN, and porting a model between them.

The tf-keras rows and the tf-keras training run in a fresh Python process
(bnhelpers.environment.run_python): one process can hold only one Keras.
"""

import keras
import numpy as np
import pytest

from bnhelpers.core.conventions import KERAS_DEFAULTS, unbiased_to_biased
from bnhelpers.tools.keras_versions import keras_facts, legacy_fused_model, legacy_keras_facts, porting_model

KERAS3 = {"keras": "keras 3", "momentum": 0.99, "epsilon": 1e-3, "axis": -1, "initial_moving_mean": 0.0,
          "initial_moving_variance": 1.0, "momentum_weighs": "old average", "moving_variance_rank2": "biased",
          "moving_variance_rank4": "biased", "moving_variance_rank4_unfused": None,
          "trainable_false_is_inference": True, "has_learning_phase": False, "has_virtual_batch_size": False}
TF_KERAS = {**KERAS3, "keras": "tf-keras", "moving_variance_rank4": "unbiased",
            "moving_variance_rank4_unfused": "biased", "has_learning_phase": True, "has_virtual_batch_size": True}


def test_keras3_rows():
    facts = keras_facts()
    assert {k: facts[k] for k in KERAS3} == KERAS3
    assert facts["momentum"] == KERAS_DEFAULTS["momentum"] and facts["epsilon"] == KERAS_DEFAULTS["epsilon"]
    assert facts["moving_variance_rank2_ratio"] == pytest.approx(1.0, rel=1e-5)
    assert facts["moving_variance_rank4_ratio"] == pytest.approx(1.0, rel=1e-5)
    assert "moving_variance_rank4_unfused_ratio" not in facts


def test_tf_keras_rows_in_a_subprocess():
    facts = legacy_keras_facts()
    assert {k: facts[k] for k in TF_KERAS} == TF_KERAS
    assert facts["version"].startswith("2.")
    assert facts["moving_variance_rank4_ratio"] == pytest.approx(8 / 7, rel=1e-5)
    assert facts["moving_variance_rank2_ratio"] == pytest.approx(1.0, rel=1e-5)
    assert facts["moving_variance_rank4_unfused_ratio"] == pytest.approx(1.0, rel=1e-5)


def test_porting_model_has_the_same_weights_in_keras3():
    model = porting_model(keras)
    assert [tuple(w.shape) for w in model.get_weights()] == [(1, 1, 3, 4), (4,), (4,), (4,), (4,), (16, 3), (3,)]
    assert [w.name for w in model.get_layer("bn").weights] == ["gamma", "beta", "moving_mean", "moving_variance"]


def test_legacy_fused_model_ported_unchanged_reproduces_it_and_rescaled_does_not():
    source = legacy_fused_model()
    assert source["fused"] and source["version"].startswith("2.") and source["values_per_channel"] == 8
    assert source["outputs"].shape == (16, 3) and source["x_test"].shape == (16, 2, 2, 3)
    moving_mean, moving_variance = source["weights"][3], source["weights"][4]
    assert np.all(moving_mean != 0) and np.all(np.abs(moving_variance - 1) > 1e-3)  # trained: the statistics moved
    ported = porting_model(keras)
    ported.set_weights(source["weights"])
    same = ported(source["x_test"], training=False).numpy()
    np.testing.assert_allclose(same, source["outputs"], atol=1e-5)
    rescaled = list(source["weights"])
    rescaled[4] = unbiased_to_biased(moving_variance, source["values_per_channel"]).astype("float32")
    ported.set_weights(rescaled)
    changed = ported(source["x_test"], training=False).numpy()
    assert np.abs(changed - source["outputs"]).max() > 1e-2


@pytest.mark.parametrize("bad, match", [
    (dict(batch_size=0), "batch_size must be a positive int, got 0"),
    (dict(epochs=True), "epochs must be a positive int, got True"),
    (dict(n_train=1, batch_size=2), r"n_train \(1\) must be at least batch_size \(2\)"),
    (dict(momentum=1.5), r"momentum must be in \[0, 1\], got 1.5"),
])
def test_legacy_fused_model_rejects_bad_arguments(bad, match):
    with pytest.raises(ValueError, match=match):
        legacy_fused_model(**bad)
