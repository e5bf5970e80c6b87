"""Keras's own training step, one batch at a time, recording what the chapters plot.

:func:`compile_classifier` compiles a logits model for integer labels;
:func:`train` runs it with ``train_on_batch`` and returns a :class:`History` of
per-step and per-epoch values. Data order comes from
:func:`bnhelpers.training.batches.epoch_batches` (a NumPy permutation per epoch drawn
from ``seed``), so two models trained with the same seed see exactly the same
batches in the same order.

Chapters: 2, 4, 5, 6, 8, 11.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np

from ..core.validation import check_positive_int
from .batches import epoch_batches
from .steps import make_optimizer

__all__ = ["compile_classifier", "History", "train"]


def compile_classifier(model, optimizer: str = "sgd", learning_rate: float = 0.1,
                       steps_per_execution: int = 1) -> keras.Model:
    """Compile for integer labels and logits: sparse cross-entropy, accuracy metric.

    ``steps_per_execution > 1`` runs that many training steps per call of the
    compiled function: the same result, faster for small models (batch-level
    callbacks then run once per call, not once per step).
    """
    check_positive_int(steps_per_execution=steps_per_execution)
    model.compile(
        optimizer=make_optimizer(optimizer, learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )
    return model


@dataclass
class History:
    """``step_loss``/``step_accuracy``: one value per training step, training mode.
    ``epoch``: lists, one entry per epoch, of ``fit_loss``/``fit_accuracy`` (mean of
    the epoch's steps, what ``fit`` reports), ``loss``/``accuracy`` (training set,
    inference mode) and ``val_loss``/``val_accuracy`` (if validation data was given)."""

    step_loss: list = field(default_factory=list)
    step_accuracy: list = field(default_factory=list)
    epoch: dict = field(default_factory=lambda: {k: [] for k in (
        "fit_loss", "fit_accuracy", "loss", "accuracy", "val_loss", "val_accuracy")})

    def final(self, key: str) -> float:
        """Last epoch's value of ``key``."""
        return float(self.epoch[key][-1])


def train(model, x, y, *, epochs: int, batch_size: int, validation=None, seed: int = 0,
          eval_batch_size: int = 512, drop_remainder: bool = False) -> History:
    """Train a compiled model (loss + ``accuracy`` metric) with ``train_on_batch``.

    ``x``: ``(N, ...)``, ``y``: ``(N,)``; ``validation``: optional ``(x_val, y_val)``.
    Evaluation runs in batches of ``eval_batch_size`` in inference mode.
    """
    if len(x) != len(y):
        raise ValueError(f"x and y disagree in length: {len(x)} vs {len(y)}")
    if not getattr(model, "compiled", False) or getattr(model, "optimizer", None) is None:
        raise ValueError("compile the model first (see compile_classifier)")
    history = History()
    for batches in epoch_batches(len(x), batch_size, epochs=epochs, seed=seed, drop_remainder=drop_remainder):
        losses, accs = [], []
        for idx in batches:
            logs = model.train_on_batch(x[idx], y[idx], return_dict=True)
            losses.append(float(logs["loss"]))
            accs.append(float(logs["accuracy"]))
        history.step_loss += losses
        history.step_accuracy += accs
        history.epoch["fit_loss"].append(float(np.mean(losses)))
        history.epoch["fit_accuracy"].append(float(np.mean(accs)))
        train_eval = model.evaluate(x, y, batch_size=eval_batch_size, verbose=0, return_dict=True)
        history.epoch["loss"].append(float(train_eval["loss"]))
        history.epoch["accuracy"].append(float(train_eval["accuracy"]))
        if validation is not None:
            val = model.evaluate(*validation, batch_size=eval_batch_size, verbose=0, return_dict=True)
            history.epoch["val_loss"].append(float(val["loss"]))
            history.epoch["val_accuracy"].append(float(val["accuracy"]))
    return history
