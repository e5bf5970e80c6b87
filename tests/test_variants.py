"""bnhelpers.layers.variants: noisy BN (Santurkar et al.) and batch renormalization with a ramp (Ioffe 2017)."""

import keras
import numpy as np
import pytest

from bnhelpers.models.mlp import build_mlp
from bnhelpers.layers.variants import NoisyShiftScale, RenormRamp, noisy_batch_norm, reseed_noise


def test_noise_is_identity_at_inference_and_affine_per_unit_in_training():
    layer = NoisyShiftScale(max_shift=0.5, max_scale=3.0, seed=1)
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    np.testing.assert_array_equal(layer(x, training=False), x)
    np.testing.assert_array_equal(layer(x), x)
    probe = np.stack([np.zeros(4), np.ones(4)]).astype(np.float32)
    out = layer(probe, training=True).numpy()
    shift, scale = out[0], out[1] - out[0]
    assert np.all(np.abs(shift) <= 0.5) and np.all((scale >= 1 / 3 - 1e-6) & (scale <= 3 + 1e-6))
    assert layer(x, training=True).shape == x.shape


def test_noise_is_redrawn_every_call_and_reseeding_repeats_it():
    layer = NoisyShiftScale(1.0, 2.0, seed=3)
    x = np.ones((2, 5), np.float32)
    first, second = layer(x, training=True).numpy(), layer(x, training=True).numpy()
    assert not np.allclose(first, second)
    np.testing.assert_allclose(first[0], first[1])        # shared by the examples of a batch
    layer.reseed(3)
    np.testing.assert_allclose(layer(x, training=True).numpy(), first)


@pytest.mark.parametrize("kwargs, match", [(dict(max_shift=-1.0), "max_shift must be >= 0, got -1.0"),
                                           (dict(max_scale=0.5), "max_scale must be >= 1, got 0.5")])
def test_noise_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NoisyShiftScale(**kwargs)


def test_noisy_batch_norm_in_an_mlp_and_reseed_noise():
    model = build_mlp(4, 2, (3, 3), bn="pre", norm_factory=noisy_batch_norm(seed=2))
    assert reseed_noise(model, 7) == 2
    x = np.random.default_rng(1).normal(size=(8, 4)).astype(np.float32)
    a = model(x, training=True).numpy()
    assert not np.allclose(a, model(x, training=True).numpy())   # new noise
    reseed_noise(model, 7)
    np.testing.assert_allclose(model(x, training=True).numpy(), a, rtol=1e-5)
    np.testing.assert_allclose(model(x, training=False).numpy(), model(x, training=False).numpy())
    assert reseed_noise(build_mlp(4, 2, (3,)), 1) == 0


def test_renorm_ramp_values():
    ramp = RenormRamp(start=10, end=30, rmax_final=3.0, dmax_final=5.0)
    assert ramp.fraction(0) == 0 and ramp.fraction(20) == 0.5 and ramp.fraction(99) == 1
    np.testing.assert_allclose(ramp.update(0), (1.0, 1.0, 0.0))
    np.testing.assert_allclose(ramp.update(20), (0.5, 2.0, 2.5))
    np.testing.assert_allclose(ramp.update(40), (1 / 3, 3.0, 5.0))
    assert float(ramp.rmax.numpy()) == 3.0 and abs(float(ramp.rmin.numpy()) - 1 / 3) < 1e-7
    for bad, match in ((dict(start=5, end=5), "need 0 <= start < end, got start=5, end=5"),
                       (dict(start=-1, end=3), "need 0 <= start < end, got start=-1, end=3"),
                       (dict(start=0, end=3, rmax_final=0.5), "rmax_final must be >= 1 and dmax_final >= 0"),
                       (dict(start=0, end=3, dmax_final=-1.0), "rmax_final must be >= 1 and dmax_final >= 0")):
        with pytest.raises(ValueError, match=match):
            RenormRamp(**bad)


def test_renorm_is_plain_bn_before_the_ramp_and_corrects_after_it():
    ramp = RenormRamp(start=5, end=6)
    renorm = ramp.factory()()
    plain = keras.layers.BatchNormalization()
    x = (4.0 + 3.0 * np.random.default_rng(0).normal(size=(16, 3))).astype(np.float32)
    renorm.build(x.shape)
    plain.build(x.shape)
    assert renorm.renorm
    ramp.update(0)                                        # r = 1, d = 0: exactly BN
    np.testing.assert_allclose(renorm(x, training=True), plain(x, training=True), atol=1e-5)
    ramp.update(10)                                       # bounds open; renorm statistics still near (0, 1)
    mu, sigma = renorm.renorm_mean.numpy(), renorm.renorm_stddev.numpy()
    corrected = renorm(x, training=True).numpy()
    sd = np.sqrt(x.var(0) + renorm.epsilon)
    r = np.clip(sd / sigma, 1 / 3, 3)
    d = np.clip((x.mean(0) - mu) / sigma, -5, 5)
    x_hat = (x - x.mean(0)) / sd
    np.testing.assert_allclose(corrected, x_hat * r + d, atol=1e-4)   # gamma = 1, beta = 0
    assert np.abs(d).max() > 3 and np.abs(corrected - x_hat).max() > 1
