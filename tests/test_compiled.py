"""bnhelpers.training.compiled: the compiled SGD loop: one step equals an eager step, one trace, probing, seeds."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bnhelpers.data import load_digits
from bnhelpers.models.mlp import build_mlp
from bnhelpers.tools.checks import TrainingFlagProbe
from bnhelpers.tools.probes import accuracy
from bnhelpers.training.batches import shuffled_schedule
from bnhelpers.training.compiled import CompiledTrainer, train_seeds, train_with_evaluation


@pytest.mark.parametrize("bn", [None, "pre"])
def test_compiled_steps_equal_eager_sgd_steps(bn, tiny_classifier, classification_data):
    x, y = classification_data
    schedule = shuffled_schedule(len(x), 8, 7, seed=1)
    compiled = CompiledTrainer(tiny_classifier(bn), x, y, learning_rate=0.3)
    losses = compiled.run(schedule)

    eager = tiny_classifier(bn)
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


def _probed_classifier():
    """The tiny classifier with a TrainingFlagProbe in front: its Python ``call`` runs once per trace."""
    probe = TrainingFlagProbe()
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(5, use_bias=False)(probe(inputs))
    hidden = keras.layers.ReLU()(keras.layers.BatchNormalization()(hidden))
    return keras.Model(inputs, keras.layers.Dense(3)(hidden)), probe


def test_learning_rate_and_load_do_not_retrace_and_take_effect(tiny_classifier, classification_data):
    # Counting traces: inside a tf.function a layer's Python `call` runs only while tracing
    # (TrainingFlagProbe's documented behaviour), so the probe's list grows once per trace.
    # This replaces reading the private trainer._run.experimental_get_tracing_count().
    x, y = classification_data
    model, probe = _probed_classifier()
    trainer = CompiledTrainer(model, x, y, learning_rate=0.1)
    probe.flags.clear()                                    # building the functional model called it symbolically
    schedule = shuffled_schedule(len(x), 8, 3)
    trainer.run(schedule)
    traced = len(probe.flags)
    assert traced >= 1 and set(probe.flags) == {True}      # traced, in training mode
    trainer.set_learning_rate(0.0001)
    assert abs(trainer.learning_rate - 0.0001) < 1e-9
    before = [v.numpy().copy() for v in trainer.model.trainable_variables]
    trainer.run(schedule[:, :4])                           # another batch size, same trace
    change = max(np.abs(v.numpy() - b).max() for v, b in zip(trainer.model.trainable_variables, before))
    assert 0 < change < 0.01
    fresh = keras.models.clone_model(model).get_weights()
    trainer.load(fresh)
    for a, b in zip(trainer.model.get_weights(), fresh):
        np.testing.assert_array_equal(a, b)
    trainer.run(schedule)
    assert len(probe.flags) == traced                      # no new trace after all that
    model(x[:2], training=True)                            # control: an eager call does run `call`
    assert len(probe.flags) == traced + 1
    CompiledTrainer(model, x, y).run(schedule)             # control: a new trainer traces anew
    assert len(probe.flags) == 2 * traced + 1


def test_trainer_checks_its_input(tiny_classifier, classification_data):
    x, y = classification_data
    with pytest.raises(TypeError, match="x must be a float array, got int64"):
        CompiledTrainer(tiny_classifier(), (x * 10).astype(np.int64), y)
    with pytest.raises(TypeError, match=r"y must be a 1-D array of integer labels, got float32 with shape \(40,\)"):
        CompiledTrainer(tiny_classifier(), x, y.astype(np.float32))
    with pytest.raises(ValueError, match="x and y disagree in length: 40 vs 39"):
        CompiledTrainer(tiny_classifier(), x, y[:-1])
    with pytest.raises(ValueError, match="learning_rate must be positive, got 0"):
        CompiledTrainer(tiny_classifier(), x, y, learning_rate=0)
    trainer = CompiledTrainer(tiny_classifier(), x, y)
    with pytest.raises(ValueError, match=r"schedule indices must lie in \[0, 40\)"):
        trainer.run(np.array([[0, len(x)]]))
    with pytest.raises(ValueError, match=r"schedule must have shape \(steps, batch_size\), got \(4,\)"):
        trainer.run(np.arange(4))
    with pytest.raises(ValueError, match="learning_rate must be positive, got -1.0"):
        trainer.set_learning_rate(-1.0)


def test_train_with_evaluation_records_probes_stops_and_calls_hooks(tiny_classifier, classification_data):
    x, y = classification_data
    trainer = CompiledTrainer(tiny_classifier(), x, y, learning_rate=0.2)
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
    with pytest.raises(ValueError, match="probe names 'step' and 'loss' are reserved"):
        train_with_evaluation(trainer, shuffled_schedule(len(x), 8, 5), 5, {"loss": len})
    with pytest.raises(ValueError, match="eval_every must be a positive int, got 0"):
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
    with pytest.raises(ValueError, match="seeds must not be empty"):
        train_seeds(make, d.x_train, d.y_train, seeds=[], schedule=sched, learning_rate=0.1, eval_every=10)
