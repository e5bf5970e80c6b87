"""A training loop that records what the chapters plot: per-step and per-epoch history.

Data order is fixed by ``seed`` (a NumPy permutation per epoch), so two models
trained with the same seed see exactly the same batches in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["History", "train"]


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
    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be >= 1")
    if len(x) != len(y):
        raise ValueError(f"x and y disagree in length: {len(x)} vs {len(y)}")
    if not getattr(model, "compiled", False) or getattr(model, "optimizer", None) is None:
        raise ValueError("compile the model first (see bnhelpers.models.compile_classifier)")
    rng = np.random.default_rng(seed)
    history = History()
    n = len(x)
    stop = n - n % batch_size if drop_remainder else n
    for _ in range(epochs):
        order = rng.permutation(n)
        losses, accs = [], []
        for start in range(0, stop, batch_size):
            idx = order[start:start + batch_size]
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
