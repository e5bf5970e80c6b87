"""The compiled SGD loop: schedules, one step equals an eager step, probing, seeds."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st

from bnhelpers.data import load_digits
from bnhelpers.tools.probes import accuracy
from bnhelpers.training.batches import class_grouped_schedule, shuffled_schedule
from bnhelpers.training.compiled import CompiledTrainer, train_seeds, train_with_evaluation
from bnhelpers.models.mlp import build_mlp


@given(n=st.integers(2, 50), batch=st.integers(1, 10), steps=st.integers(1, 40), seed=st.integers(0, 99))
def test_shuffled_schedule_is_epochs_of_permutations(n, batch, steps, seed):
    if batch > n:
        with pytest.raises(ValueError):
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


@pytest.mark.parametrize("kwargs", [dict(batch_size=30, classes_per_batch=4), dict(batch_size=32, classes_per_batch=11),
                                    dict(batch_size=64, classes_per_batch=1), dict(batch_size=0, classes_per_batch=1)])
def test_class_grouped_schedule_rejects_impossible_requests(kwargs):
    labels = np.repeat(np.arange(10), 20)
    with pytest.raises(ValueError):
        class_grouped_schedule(labels, steps=3, **kwargs)
    with pytest.raises(ValueError):
        class_grouped_schedule(labels.reshape(20, 10), 4, 2, 3)


def _tiny(bn="pre", seed=0):
    return build_mlp(6, 3, (5,), bn=bn, activation="relu", seed=seed)


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (n, 6)).astype(np.float32), rng.integers(0, 3, n)


@pytest.mark.parametrize("bn", [None, "pre"])
def test_compiled_steps_equal_eager_sgd_steps(bn):
    x, y = _data()
    schedule = shuffled_schedule(len(x), 8, 7, seed=1)
    compiled = CompiledTrainer(_tiny(bn), x, y, learning_rate=0.3)
    losses = compiled.run(schedule)

    eager = _tiny(bn)
    opt = keras.optimizers.SGD(0.3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    expected = []
    for idx in schedule:
        with tf.GradientTape() as tape:
            loss = loss_fn(y[idx], eager(x[idx], training=True))
        opt.apply_gradients(zip(tape.gradient(loss, eager.trainable_variables), eager.trainable_variables))
        expected.append(float(loss))
    np.testing.assert_allclose(losses, expected, rtol=1e-5, atol=1e-6)
    for a, b in zip(compiled.model.get_weights(), eager.get_weights()):  # includes BN moving statistics
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_learning_rate_and_load_do_not_retrace_and_take_effect():
    x, y = _data()
    trainer = CompiledTrainer(_tiny(), x, y, learning_rate=0.1)
    schedule = shuffled_schedule(len(x), 8, 3)
    trainer.run(schedule)
    trainer.set_learning_rate(0.0001)
    assert abs(trainer.learning_rate - 0.0001) < 1e-9
    before = [v.numpy().copy() for v in trainer.model.trainable_variables]
    trainer.run(schedule[:, :4])                           # another batch size, same trace
    change = max(np.abs(v.numpy() - b).max() for v, b in zip(trainer.model.trainable_variables, before))
    assert 0 < change < 0.01
    assert trainer._run.experimental_get_tracing_count() == 1
    fresh = _tiny(seed=5).get_weights()
    trainer.load(fresh)
    for a, b in zip(trainer.model.get_weights(), fresh):
        np.testing.assert_array_equal(a, b)


def test_trainer_checks_its_input():
    x, y = _data()
    with pytest.raises(TypeError, match="float array"):
        CompiledTrainer(_tiny(), (x * 10).astype(np.int64), y)
    with pytest.raises(TypeError):
        CompiledTrainer(_tiny(), x, y.astype(np.float32))
    with pytest.raises(ValueError):
        CompiledTrainer(_tiny(), x, y[:-1])
    with pytest.raises(ValueError):
        CompiledTrainer(_tiny(), x, y, learning_rate=0)
    trainer = CompiledTrainer(_tiny(), x, y)
    with pytest.raises(ValueError):
        trainer.run(np.array([[0, len(x)]]))
    with pytest.raises(ValueError):
        trainer.run(np.arange(4))
    with pytest.raises(ValueError):
        trainer.set_learning_rate(-1.0)


def test_train_with_evaluation_records_probes_stops_and_calls_hooks():
    x, y = _data()
    trainer = CompiledTrainer(_tiny(), x, y, learning_rate=0.2)
    seen = []
    record = train_with_evaluation(trainer, shuffled_schedule(len(x), 8, 23), 5,
                                   {"acc": lambda m: accuracy(m, x, y), "pair": lambda m: np.zeros(2)},
                                   before_chunk=seen.append)
    np.testing.assert_array_equal(record["step"], [0, 5, 10, 15, 20, 23])
    assert seen == [0, 5, 10, 15, 20]
    assert record["loss"].shape == (23,) and record["acc"].shape == (6,) and record["pair"].shape == (6, 2)

    stopped = train_with_evaluation(trainer, shuffled_schedule(len(x), 8, 50), 5,
                                    {"acc": lambda m: accuracy(m, x, y)}, stop=lambda r: r["step"][-1] >= 15)
    np.testing.assert_array_equal(stopped["step"], [0, 5, 10, 15])
    with pytest.raises(ValueError):
        train_with_evaluation(trainer, shuffled_schedule(len(x), 8, 5), 5, {"loss": len})
    with pytest.raises(ValueError):
        train_with_evaluation(trainer, shuffled_schedule(len(x), 8, 5), 0)


def test_train_seeds_is_reproducible_and_seeds_differ():
    d = load_digits()
    make = lambda seed: build_mlp(64, 10, (16,), bn="pre", seed=seed)
    sched = lambda seed: shuffled_schedule(len(d.x_train), 32, 60, seed=seed)
    probes = lambda model: {"acc": lambda m: accuracy(m, d.x_test, d.y_test)}
    trainer, first = train_seeds(make, d.x_train, d.y_train, seeds=[0, 1], schedule=sched, learning_rate=0.2,
                                 eval_every=30, probes=probes)
    _, again = train_seeds(make, d.x_train, d.y_train, seeds=[0], schedule=sched, learning_rate=0.2,
                           eval_every=30, probes=probes, trainer=trainer)
    np.testing.assert_allclose(first[0]["loss"], again[0]["loss"], rtol=1e-6)
    assert not np.allclose(first[0]["loss"], first[1]["loss"])
    assert first[0]["acc"][-1] > 0.5 and first[0]["acc"][0] < 0.3
    with pytest.raises(ValueError):
        train_seeds(make, d.x_train, d.y_train, seeds=[], schedule=sched, learning_rate=0.1, eval_every=10)


def test_accuracy_in_training_mode_leaves_moving_statistics_alone():
    x, y = _data()
    model = _tiny()
    before = [v.numpy().copy() for v in model.non_trainable_variables]
    a_train = accuracy(model, x, y, training=True)
    for v, b in zip(model.non_trainable_variables, before):
        np.testing.assert_array_equal(v.numpy(), b)
    logits = model(x, training=False).numpy()
    assert accuracy(model, x, y) == np.mean(logits.argmax(axis=1) == y)
    assert 0.0 <= a_train <= 1.0
