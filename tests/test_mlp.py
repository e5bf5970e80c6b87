"""bnhelpers.models.mlp: the MLP builder (BN placements, shared initial kernels) and chapter 4's deep regressor."""

import keras
import numpy as np
import pytest

from bnhelpers.layers.batch_norm import MomentsBatchNorm
from bnhelpers.models.mlp import build_deep_regressor, build_mlp


def _layer_types(model):
    return [type(layer).__name__ for layer in model.layers[1:]]


def test_placements():
    assert _layer_types(build_mlp(4, 3, (5,), bn=None)) == ["Dense", "Activation", "Dense"]
    assert _layer_types(build_mlp(4, 3, (5,), bn="pre")) == ["Dense", "BatchNormalization", "Activation", "Dense"]
    assert _layer_types(build_mlp(4, 3, (5,), bn="post")) == ["Dense", "Activation", "BatchNormalization", "Dense"]
    assert build_mlp(4, 3, (5,), bn="pre").layers[1].use_bias is False


def test_identical_initial_kernels_with_and_without_bn():
    a = build_mlp(6, 3, (8, 8), bn=None, seed=4)
    b = build_mlp(6, 3, (8, 8), bn="pre", seed=4)
    for name in ("dense_0", "dense_1", "logits"):
        np.testing.assert_array_equal(a.get_layer(name).kernel.numpy(), b.get_layer(name).kernel.numpy())


def test_init_std_and_norm_factory():
    m = build_mlp(50, 3, (400,), init_std=0.01, bn="pre", norm_factory=lambda: keras.layers.LayerNormalization())
    assert abs(m.get_layer("dense_0").kernel.numpy().std() - 0.01) < 0.001
    assert "LayerNormalization" in _layer_types(m)


@pytest.mark.parametrize("kwargs, match", [
    ({"bn": "middle"}, r"bn must be one of \(None, 'pre', 'post'\), got 'middle'"),
    ({"widths": ()}, r"widths must be a non-empty list of positive ints, got \(\)"),
    ({"widths": (0,)}, r"widths must be a non-empty list of positive ints, got \(0,\)"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_mlp(4, 3, **kwargs)
    with pytest.raises(ValueError, match="input_dim and n_outputs must be >= 1"):
        build_mlp(0, 3)


def test_deep_regressor_structure_and_shared_initial_kernels():
    plain = build_deep_regressor("tanh", depth=3, width=5, seed=2)
    normed = build_deep_regressor("tanh", bn=True, depth=3, width=5, seed=2, momentum=0.7)
    assert _layer_types(plain) == ["Dense", "Activation"] * 3 + ["Dense"]
    assert _layer_types(normed) == ["Dense", "MomentsBatchNorm", "Activation"] * 3 + ["Dense"]
    assert all(l.momentum == 0.7 for l in normed.layers if isinstance(l, MomentsBatchNorm))
    for name in ("dense_0", "dense_1", "dense_2", "logits"):
        np.testing.assert_array_equal(plain.get_layer(name).kernel.numpy(), normed.get_layer(name).kernel.numpy())
    wide = build_deep_regressor("relu", depth=1, width=400, init_std=1.0)
    assert abs(wide.get_layer("logits").kernel.numpy().std() - 1.0) < 0.1


@pytest.mark.parametrize("kwargs, match", [
    ({"activation": "sigmoid"}, r"activation must be one of \('relu', 'tanh'\), got 'sigmoid'"),
    ({"depth": 0}, "depth and width must be >= 1, got 0 and 30"),
    ({"init_std": 0.0}, "init_std must be > 0, got 0.0"),
])
def test_deep_regressor_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_deep_regressor(**kwargs)
