"""bnhelpers.training.loop: compiling a classifier and the Keras training loop with per-step records."""

import keras
import numpy as np
import pytest

from bnhelpers.data import load_digits
from bnhelpers.models.mlp import build_mlp
from bnhelpers.training.loop import compile_classifier, train


def test_training_records_steps_and_epochs_and_is_reproducible():
    d = load_digits()
    runs = []
    for _ in range(2):
        keras.utils.set_random_seed(0)
        model = compile_classifier(build_mlp(64, 10, (32,), bn="pre", seed=1), "sgd", 0.1)
        runs.append(train(model, d.x_train, d.y_train, epochs=2, batch_size=100,
                          validation=(d.x_test, d.y_test), seed=3))
    h = runs[0]
    assert len(h.step_loss) == 2 * int(np.ceil(len(d.x_train) / 100))
    assert all(len(v) == 2 for v in h.epoch.values())
    assert h.final("val_accuracy") > 0.5
    np.testing.assert_allclose(runs[0].step_loss, runs[1].step_loss, rtol=1e-6)


def test_training_checks_its_input():
    model = build_mlp(4, 2, (3,))
    with pytest.raises(ValueError, match=r"compile the model first \(see compile_classifier\)"):
        train(model, np.zeros((4, 4), "float32"), np.zeros(4), epochs=1, batch_size=2)
    compile_classifier(model)
    with pytest.raises(ValueError, match="x and y disagree in length: 4 vs 3"):
        train(model, np.zeros((4, 4), "float32"), np.zeros(3), epochs=1, batch_size=2)
    with pytest.raises(ValueError, match=r"optimizer must be one of \['adam', 'sgd'\], got 'rmsprop'"):
        compile_classifier(model, optimizer="rmsprop")


def test_compile_classifier_steps_per_execution_gives_the_same_training():
    d = load_digits()
    results = []
    for spe in (1, 8):
        keras.utils.set_random_seed(0)
        model = compile_classifier(build_mlp(64, 10, (16,), bn="pre", seed=2), steps_per_execution=spe)
        model.fit(d.x_train[:320], d.y_train[:320], batch_size=32, epochs=1, verbose=0, shuffle=False)
        results.append(model.get_weights())
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="steps_per_execution must be a positive int, got 0"):
        compile_classifier(build_mlp(4, 2, (3,)), steps_per_execution=0)
