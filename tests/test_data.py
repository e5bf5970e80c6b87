"""bnhelpers.data: the bundled and synthetic data sets."""

import numpy as np
import pytest

from bnhelpers import data


def test_digits_split_is_stratified_scaled_and_fixed():
    a, b = data.load_digits(seed=0), data.load_digits(seed=0)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert a.x_train.shape[1] == 64 and a.x_train.dtype == np.float32
    assert len(a.x_train) + len(a.x_test) == 1797
    assert 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0
    train_freq = np.bincount(a.y_train) / len(a.y_train)
    test_freq = np.bincount(a.y_test) / len(a.y_test)
    np.testing.assert_allclose(train_freq, test_freq, atol=0.01)
    assert data.load_digits(images=True).x_test.shape[1:] == (8, 8, 1)
    with pytest.raises(ValueError, match=r"test_size must be in \(0, 1\), got 1.5"):
        data.load_digits(test_size=1.5)


def test_quadratic_regression_follows_the_seed_recipe():
    x, y = data.quadratic_regression(n=500, noise_std=0.0)
    assert x.shape == y.shape == (500, 1)
    assert (x.min(), x.max()) == (-7.0, 10.0)
    np.testing.assert_allclose(y, x.astype(np.float64) ** 2 - 5, atol=1e-5)
    _, noisy = data.quadratic_regression(n=5000, noise_std=8.0, low=0, high=0)
    assert abs(noisy.std() - 8.0) < 0.3
    with pytest.raises(ValueError, match="n must be >= 2, got 1"):
        data.quadratic_regression(n=1)
    with pytest.raises(ValueError, match="noise_std must be >= 0, got -1"):
        data.quadratic_regression(noise_std=-1)


def test_shifted_gaussian_labels_are_relative_to_the_shift():
    x, y = data.shifted_gaussian(n=4000, shift=2.0, seed=1)
    assert abs(x.mean() - 2.0) < 0.1
    np.testing.assert_array_equal(y, (x > 2.0).astype(np.float32))
    assert 0.45 < y.mean() < 0.55


def test_random_images_are_nhwc():
    x = data.random_images(3, 5, 4, 2, mean=1.0, std=0.1)
    assert x.shape == (3, 5, 4, 2) and x.dtype == np.float32
    with pytest.raises(ValueError, match=r"every dimension must be >= 1, got \(0, 1, 1, 1\)"):
        data.random_images(0, 1, 1, 1)


def test_padded_sequences_are_zero_after_each_length():
    x, lengths = data.padded_sequences(20, 9, 3, min_len=2, seed=4, mean=1.0, std=0.5)
    assert x.shape == (20, 9, 3) and x.dtype == np.float32 and lengths.dtype == np.int64
    assert lengths.min() >= 2 and lengths.max() <= 9 and len(set(lengths.tolist())) > 1
    for row, length in zip(x, lengths):
        assert np.all(row[length:] == 0) and np.all(row[:length] != 0)
    tokens = np.concatenate([row[:length] for row, length in zip(x, lengths)])
    assert abs(tokens.mean() - 1.0) < 0.1 and abs(tokens.std() - 0.5) < 0.1
    again, same_lengths = data.padded_sequences(20, 9, 3, min_len=2, seed=4, mean=1.0, std=0.5)
    np.testing.assert_array_equal(again, x)
    np.testing.assert_array_equal(same_lengths, lengths)
    full, full_lengths = data.padded_sequences(4, 5, 2, min_len=5)
    assert np.all(full_lengths == 5) and np.all(full != 0)


def test_padded_sequences_refuse_bad_lengths():
    with pytest.raises(ValueError, match="need 1 <= min_len <= max_len, got min_len=6, max_len=5"):
        data.padded_sequences(3, 5, 2, min_len=6)
    with pytest.raises(ValueError, match="n and features must be >= 1, got n=0, features=2"):
        data.padded_sequences(0, 5, 2)
