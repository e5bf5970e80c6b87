"""bnhelpers.training.batches: the one seeded batch order (epoch permutations, schedules, class-grouped batches)."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bnhelpers.training.batches import class_grouped_schedule, epoch_batches, epoch_orders, shuffled_schedule


def test_epoch_orders_are_seeded_permutations_that_differ_between_epochs():
    orders = list(itertools.islice(epoch_orders(10, seed=4), 3))
    for order in orders:
        np.testing.assert_array_equal(np.sort(order), np.arange(10))
    assert not np.array_equal(orders[0], orders[1])
    again = list(itertools.islice(epoch_orders(10, seed=4), 3))
    np.testing.assert_array_equal(orders, again)
    rng = np.random.default_rng(4)  # the documented source: numpy's default_rng(seed), one permutation per epoch
    np.testing.assert_array_equal(orders, [rng.permutation(10) for _ in range(3)])
    with pytest.raises(ValueError, match="n must be a positive int, got 0"):
        next(epoch_orders(0))


@given(n=st.integers(1, 30), batch=st.integers(1, 12), epochs=st.integers(1, 3), seed=st.integers(0, 99),
       drop=st.booleans())
def test_epoch_batches_cut_each_epoch_order_into_consecutive_batches(n, batch, epochs, seed, drop):
    got = list(epoch_batches(n, batch, epochs=epochs, seed=seed, drop_remainder=drop))
    orders = list(itertools.islice(epoch_orders(n, seed), epochs))
    assert len(got) == epochs
    for batches, order in zip(got, orders):
        assert all(len(b) == batch for b in (batches if drop else batches[:-1]))
        assert all(0 < len(b) <= batch for b in batches)
        kept = n - n % batch if drop else n
        assert len(batches) == (kept // batch if drop else -(-n // batch))
        joined = np.concatenate(batches) if batches else np.array([], dtype=order.dtype)
        np.testing.assert_array_equal(joined, order[:kept])


def test_epoch_batches_remainder_and_bad_arguments():
    batches = next(epoch_batches(10, 4, epochs=1))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert [len(b) for b in next(epoch_batches(10, 4, epochs=1, drop_remainder=True))] == [4, 4]
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        next(epoch_batches(10, 0, epochs=1))
    with pytest.raises(ValueError, match="epochs must be a positive int, got True"):
        next(epoch_batches(10, 2, epochs=True))


@given(n=st.integers(2, 50), batch=st.integers(1, 10), steps=st.integers(1, 40), seed=st.integers(0, 99))
def test_shuffled_schedule_is_epochs_of_permutations(n, batch, steps, seed):
    if batch > n:
        with pytest.raises(ValueError, match=f"batch_size {batch} is larger than the data set \\({n}\\)"):
            shuffled_schedule(n, batch, steps, seed)
        return
    s = shuffled_schedule(n, batch, steps, seed)
    assert s.shape == (steps, batch) and s.dtype == np.int32
    assert s.min() >= 0 and s.max() < n
    per_epoch = n // batch
    for start in range(0, steps, per_epoch):
        epoch = s[start:start + per_epoch].ravel()
        assert len(np.unique(epoch)) == len(epoch)        # no example twice within an epoch
    np.testing.assert_array_equal(s, shuffled_schedule(n, batch, steps, seed))


@given(n=st.integers(2, 40), batch=st.integers(1, 12), steps=st.integers(1, 30), seed=st.integers(0, 99))
def test_carry_over_lays_epochs_end_to_end(n, batch, steps, seed):
    if batch > n:
        return
    s = shuffled_schedule(n, batch, steps, seed, carry_over=True)
    assert s.shape == (steps, batch) and s.dtype == np.int32
    stream = s.ravel()
    for start in range(0, len(stream) - n + 1, n):       # every epoch-length stretch: each example exactly once
        np.testing.assert_array_equal(np.sort(stream[start:start + n]), np.arange(n))
    orders = np.concatenate(list(itertools.islice(epoch_orders(n, seed), -(-len(stream) // n))))
    np.testing.assert_array_equal(stream, orders[:len(stream)])


def test_carry_over_batches_straddle_epochs():
    s = shuffled_schedule(10, 4, 5, seed=2, carry_over=True)
    first, second = itertools.islice(epoch_orders(10, 2), 2)
    np.testing.assert_array_equal(s[2], np.concatenate([first[8:], second[:2]]))   # positions 8..11
    dropped = shuffled_schedule(10, 4, 5, seed=2)
    np.testing.assert_array_equal(dropped[2], second[:4])                      # the default drops first[8:]


def test_class_grouped_schedule_draws_few_classes_per_batch():
    labels = np.repeat(np.arange(10), 20)
    s = class_grouped_schedule(labels, 32, 2, 50, seed=3)
    assert s.shape == (50, 32)
    for row in s:
        classes, counts = np.unique(labels[row], return_counts=True)
        assert len(classes) == 2 and np.all(counts == 16)
        assert len(np.unique(row)) == 32
    firsts = {tuple(np.unique(labels[row])) for row in s}
    assert len(firsts) > 10                                # the class pairs vary
    np.testing.assert_array_equal(s, class_grouped_schedule(labels, 32, 2, 50, seed=3))


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=30, classes_per_batch=4), "batch_size 30 is not a multiple of classes_per_batch 4"),
    (dict(batch_size=32, classes_per_batch=11), "classes_per_batch 11 exceeds the 10 classes"),
    (dict(batch_size=64, classes_per_batch=1), "some class has fewer than 64 examples"),
    (dict(batch_size=0, classes_per_batch=1), "batch_size must be a positive int, got 0"),
])
def test_class_grouped_schedule_rejects_impossible_requests(kwargs, match):
    labels = np.repeat(np.arange(10), 20)
    with pytest.raises(ValueError, match=match):
        class_grouped_schedule(labels, steps=3, **kwargs)


def test_class_grouped_schedule_needs_one_dimensional_labels():
    with pytest.raises(ValueError, match=r"labels must be 1-D, got shape \(20, 10\)"):
        class_grouped_schedule(np.repeat(np.arange(10), 20).reshape(20, 10), 4, 2, 3)
