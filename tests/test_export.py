"""bnhelpers.tools.export: TensorFlow Lite conversion of a BN model, its operators, constants and outputs.

One small Conv2D -> BN -> ReLU -> Dense model, with non-trivial moving statistics, is exported once per module.
"""

import numpy as np
import pytest

import keras
import tensorflow as tf

from bnhelpers.tools import export
from bnhelpers.tools.folding import fold_batch_norm


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((6, 6, 2)),
        keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="conv"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.ReLU(),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, name="logits"),
    ])
    rng = np.random.default_rng(0)
    bn = model.get_layer("bn")
    bn.set_weights([rng.uniform(0.5, 2, 4), rng.normal(0, 1, 4), rng.normal(0, 1, 4), rng.uniform(0.5, 2, 4)])
    x = rng.normal(0, 1, (20, 6, 6, 2)).astype(np.float32)
    path = tmp_path_factory.mktemp("export") / "model"
    model.export(path, verbose=False)
    return model, x, path, export.convert(path)


def test_float_conversion_folds_bn_and_matches_keras(exported):
    model, x, _, content = exported
    ops = export.operators(content)
    assert ops[0] == "CONV_2D" and "FULLY_CONNECTED" in ops
    assert not {"MUL", "ADD", "SUB", "RSQRT"} & set(ops)
    expected = model(x, training=False).numpy()
    assert np.abs(export.predict(content, x) - expected).max() < 1e-4
    assert np.abs(export.predict(content, x, batch_size=3) - expected).max() < 1e-4  # batches of 3, 3, ..., 2


def test_constants_hold_the_folded_kernel_and_bias(exported):
    model, _, _, content = exported
    stored = export.constants(content)
    kernel = next(v for v in stored.values() if v.shape == (4, 3, 3, 2)).transpose(1, 2, 3, 0)
    bias = next(v for k, v in stored.items() if v.shape == (4,) and "batchnorm" in k)
    folded_kernel, folded_bias = fold_batch_norm(model).get_layer("conv").get_weights()
    assert np.abs(kernel - folded_kernel).max() < 1e-5 and np.abs(bias - folded_bias).max() < 1e-5
    assert all(name for name in stored)


def test_int8_conversion_quantizes_input_and_output(exported):
    model, x, path, content = exported
    quantized = export.convert(path, export.representative_dataset(x, 20))
    runner = export.interpreter(quantized)
    assert runner.get_input_details()[0]["dtype"] == np.int8 and runner.get_output_details()[0]["dtype"] == np.int8
    assert export.operators(quantized) == export.operators(content)
    expected = model(x, training=False).numpy()
    error = np.abs(export.predict(quantized, x) - expected).max()
    assert error < 0.1 * np.abs(expected).max()   # quantized, close to the float model


def test_bn_after_relu_stays_unfused(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3, use_bias=False), keras.layers.ReLU(),
                              keras.layers.BatchNormalization(), keras.layers.Flatten(), keras.layers.Dense(2)])
    # non-trivial parameters: with the initial ones (shift 0) the converter drops the ADD of zeros
    model.layers[2].set_weights([np.full(2, 2.0), np.full(2, 0.5), np.full(2, 0.1), np.full(2, 3.0)])
    model.export(tmp_path / "post", verbose=False)
    assert {"MUL", "ADD"} <= set(export.operators(export.convert(tmp_path / "post")))


def test_representative_dataset_yields_single_float32_examples():
    x = np.arange(12.0).reshape(3, 4)
    examples = list(export.representative_dataset(x, 2)())
    assert len(examples) == 2 and examples[1][0].dtype == np.float32 and examples[1][0].shape == (1, 4)
    for bad in (0, 4, True):
        with pytest.raises(ValueError):
            export.representative_dataset(x, bad)


def test_interpreter_prints_nothing(exported, capfd):
    *_, content = exported
    export.operators(content)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
