"""bnhelpers.core.conventions: converters (checked mathematically) and the measured Keras conventions.

The tf-keras rows run in a subprocess: one process can hold only one Keras.
"""

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bnhelpers.core import conventions as cv

momenta = st.floats(0.0, 1.0, allow_nan=False)


@given(momenta)
def test_momentum_converters_are_inverse(m):
    assert cv.torch_to_keras_momentum(cv.keras_to_torch_momentum(m)) == pytest.approx(m, abs=1e-12)


@given(momenta, st.floats(-10, 10), st.floats(-10, 10))
def test_converted_momentum_gives_the_same_update(m, old, new):
    keras_side = cv.ema_update(old, new, m, "keras")
    torch_side = cv.ema_update(old, new, cv.keras_to_torch_momentum(m), "torch")
    assert keras_side == pytest.approx(torch_side, abs=1e-9)


def test_ema_update_matches_keras_layer_and_documented_torch_rule():
    x = np.random.default_rng(0).normal(4.0, 1.0, (32, 2)).astype("float32")
    layer = keras.layers.BatchNormalization(momentum=0.9)
    layer(x, training=True)
    np.testing.assert_allclose(layer.moving_mean.numpy(), cv.ema_update(0.0, x.mean(0), 0.9), rtol=1e-5)
    # PyTorch's documented rule: running = (1 - momentum) * running + momentum * batch
    assert cv.ema_update(1.0, 3.0, 0.1, "torch") == pytest.approx(0.9 * 1.0 + 0.1 * 3.0)
    with pytest.raises(ValueError):
        cv.ema_update(0, 1, 0.5, "jax")


@given(st.integers(2, 10_000), st.floats(0.0, 1e6))
def test_variance_converters_are_inverse_and_match_numpy(count, scale):
    assert cv.unbiased_to_biased(cv.biased_to_unbiased(scale, count), count) == pytest.approx(scale, rel=1e-12)
    x = np.random.default_rng(count).standard_normal(min(count, 300))
    m = len(x)
    if m >= 2:
        assert cv.biased_to_unbiased(x.var(), m) == pytest.approx(x.var(ddof=1), rel=1e-12)


def test_moving_average_of_unbiased_variances_converts_except_for_the_initial_share():
    rng = np.random.default_rng(1)
    m, momentum, steps = 8, 0.9, 50
    biased_avg = unbiased_avg = 1.0
    for _ in range(steps):
        batch = rng.normal(0.0, 2.0, m)
        biased_avg = cv.ema_update(biased_avg, batch.var(), momentum)
        unbiased_avg = cv.ema_update(unbiased_avg, batch.var(ddof=1), momentum)
    share = cv.initial_weight(momentum, steps)
    # unbiased_avg = share * 1 + m/(m-1) * (biased_avg - share * 1)
    assert unbiased_avg == pytest.approx(share + cv.biased_to_unbiased(biased_avg - share, m), rel=1e-10)


@pytest.mark.parametrize("bad", [1, 0, True, 2.5])
def test_variance_converters_reject_bad_counts(bad):
    with pytest.raises((TypeError, ValueError)):
        cv.biased_to_unbiased(1.0, bad)


@given(st.floats(0.5, 0.999), st.floats(0.001, 0.5))
def test_steps_to_forget_is_the_first_step_below_the_threshold(m, remaining):
    steps = cv.steps_to_forget(m, remaining)
    assert m**steps <= remaining < m ** (steps - 1)


def test_steps_to_forget_values_and_window():
    assert cv.steps_to_forget(0.99, 0.01) == 459
    assert cv.steps_to_forget(0.99, np.exp(-1)) == 100  # about 1 / (1 - m)
    assert cv.steps_to_forget(0.0) == 1
    with pytest.raises(ValueError):
        cv.steps_to_forget(1.0)
    assert cv.initial_weight(0.99, 100) == pytest.approx(0.366, abs=1e-3)


def test_config_translation():
    assert cv.keras_to_torch_config({}) == {"momentum": pytest.approx(0.01), "eps": 1e-3}
    back = cv.torch_to_keras_config({}, "channels_first")
    assert back == {"momentum": pytest.approx(0.9), "epsilon": 1e-5, "axis": 1}
    with pytest.raises(ValueError, match="cumulative"):
        cv.torch_to_keras_config({"momentum": None})
    with pytest.raises(ValueError):
        cv.keras_to_torch_config({"axis": 1})
    with pytest.raises(ValueError):
        cv.keras_to_torch_momentum(1.5)
    with pytest.raises(TypeError):
        cv.keras_to_torch_momentum("0.9")


def test_axes_and_channels_first_layer_equals_channels_last():
    assert cv.reduction_axes(4) == (0, 1, 2) and cv.reduction_axes(4, "channels_first") == (0, 2, 3)
    assert cv.reduction_axes(2, "channels_first") == (0,)
    with pytest.raises(ValueError):
        cv.channel_axis("nhwc")
    x = np.random.default_rng(2).normal(1.0, 3.0, (4, 3, 5, 5)).astype("float32")
    first = keras.layers.BatchNormalization(axis=cv.channel_axis("channels_first"))
    last = keras.layers.BatchNormalization(axis=cv.channel_axis("channels_last"))
    y_first = first(x, training=True).numpy()
    y_last = last(np.transpose(x, (0, 2, 3, 1)), training=True).numpy()
    np.testing.assert_allclose(y_first, np.transpose(y_last, (0, 3, 1, 2)), atol=1e-5)
    np.testing.assert_allclose(first.moving_variance.numpy(), last.moving_variance.numpy(), rtol=1e-5)


KERAS3 = {"keras": "keras 3", "momentum": 0.99, "epsilon": 1e-3, "axis": -1, "initial_moving_mean": 0.0,
          "initial_moving_variance": 1.0, "momentum_weighs": "old average", "moving_variance_rank2": "biased",
          "moving_variance_rank4": "biased", "moving_variance_rank4_unfused": None,
          "trainable_false_is_inference": True, "has_learning_phase": False, "has_virtual_batch_size": False}
TF_KERAS = {**KERAS3, "keras": "tf-keras", "moving_variance_rank4": "unbiased",
            "moving_variance_rank4_unfused": "biased", "has_learning_phase": True, "has_virtual_batch_size": True}


def test_keras3_rows():
    facts = cv.keras_facts()
    assert {k: facts[k] for k in KERAS3} == KERAS3
    assert facts["momentum"] == cv.KERAS_DEFAULTS["momentum"] and facts["epsilon"] == cv.KERAS_DEFAULTS["epsilon"]
    assert facts["moving_variance_rank2_ratio"] == pytest.approx(1.0, rel=1e-5)
    assert facts["moving_variance_rank4_ratio"] == pytest.approx(1.0, rel=1e-5)
    assert "moving_variance_rank4_unfused_ratio" not in facts


def test_tf_keras_rows_in_a_subprocess():
    facts = cv.legacy_keras_facts()
    assert {k: facts[k] for k in TF_KERAS} == TF_KERAS
    assert facts["version"].startswith("2.")
    assert facts["moving_variance_rank4_ratio"] == pytest.approx(8 / 7, rel=1e-5)
    assert facts["moving_variance_rank2_ratio"] == pytest.approx(1.0, rel=1e-5)
    assert facts["moving_variance_rank4_unfused_ratio"] == pytest.approx(1.0, rel=1e-5)


def test_porting_model_has_the_same_weights_in_keras3():
    model = cv.porting_model(keras)
    assert [tuple(w.shape) for w in model.get_weights()] == [(1, 1, 3, 4), (4,), (4,), (4,), (4,), (16, 3), (3,)]
    assert [w.name for w in model.get_layer("bn").weights] == ["gamma", "beta", "moving_mean", "moving_variance"]


def test_legacy_fused_model_ported_unchanged_reproduces_it_and_rescaled_does_not():
    source = cv.legacy_fused_model()
    assert source["fused"] and source["version"].startswith("2.") and source["values_per_channel"] == 8
    assert source["outputs"].shape == (16, 3) and source["x_test"].shape == (16, 2, 2, 3)
    moving_mean, moving_variance = source["weights"][3], source["weights"][4]
    assert np.all(moving_mean != 0) and np.all(np.abs(moving_variance - 1) > 1e-3)  # trained: the statistics moved
    ported = cv.porting_model(keras)
    ported.set_weights(source["weights"])
    same = ported(source["x_test"], training=False).numpy()
    np.testing.assert_allclose(same, source["outputs"], atol=1e-5)
    rescaled = list(source["weights"])
    rescaled[4] = cv.unbiased_to_biased(moving_variance, source["values_per_channel"]).astype("float32")
    ported.set_weights(rescaled)
    changed = ported(source["x_test"], training=False).numpy()
    assert np.abs(changed - source["outputs"]).max() > 1e-2


@pytest.mark.parametrize("bad", [dict(batch_size=0), dict(epochs=True), dict(n_train=1, batch_size=2),
                                 dict(momentum=1.5)])
def test_legacy_fused_model_rejects_bad_arguments(bad):
    with pytest.raises((TypeError, ValueError)):
        cv.legacy_fused_model(**bad)
