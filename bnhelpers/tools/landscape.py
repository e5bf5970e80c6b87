"""How smooth is the loss along the gradient? (Santurkar et al. 2018, Fig. 4, at small scale.)

At the current weights ``w`` with gradient ``g`` (training-mode loss on a fixed
batch ``x, y``), :class:`GradientDirectionProbe` looks at the points
``w - eta * g`` for a few step sizes ``eta`` and measures

- ``loss_range``: max minus min of the loss over ``eta = 0`` and the step sizes
  (how much the loss varies along the step);
- ``grad_change``: the largest ``||g(w - eta g) - g(w)||`` (how well the
  gradient predicts the gradient a step away);
- ``beta``: the largest ``||g(w - eta g) - g(w)|| / (eta ||g||)``, the paper's
  "effective beta-smoothness" (a local Lipschitz constant of the gradient).

Everything goes through ``model.stateless_call``: the model's weights and BN
moving statistics are never modified. ``y`` holds integer labels and the model
outputs logits (sparse softmax cross-entropy).

Chapters: 7.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GradientDirectionProbe"]


class GradientDirectionProbe:
    """``probe(model) -> np.array([loss, grad_norm, loss_range, grad_change, beta])``, in ``FIELDS`` order.

    One probe serves one model (its loss and gradient are traced once).
    ``step_sizes``: positive floats, e.g. the paper's range 0.05 ... 0.4.
    """

    FIELDS = ("loss", "grad_norm", "loss_range", "grad_change", "beta")

    def __init__(self, model, x, y, step_sizes=(0.05, 0.1, 0.2, 0.4)):
        import keras
        import tensorflow as tf

        step_sizes = np.asarray(step_sizes, dtype=np.float64)
        if step_sizes.ndim != 1 or len(step_sizes) == 0 or np.any(step_sizes <= 0):
            raise ValueError(f"step_sizes must be a non-empty 1-D list of positive numbers, got {step_sizes}")
        if len(x) != len(y):
            raise ValueError(f"x and y disagree in length: {len(x)} vs {len(y)}")
        self.model = model
        self.step_sizes = step_sizes
        self._x = tf.constant(np.asarray(x, dtype=keras.config.floatx()))
        self._y = tf.constant(np.asarray(y).astype(np.int32))
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        @tf.function
        def loss_and_grad(trainable):
            with tf.GradientTape() as tape:
                tape.watch(trainable)
                non_trainable = [v.value for v in model.non_trainable_variables]
                logits, _ = model.stateless_call(trainable, non_trainable, self._x, training=True)
                loss = loss_fn(self._y, logits)
            return loss, tape.gradient(loss, trainable)

        self._loss_and_grad = loss_and_grad

    def measure(self) -> dict:
        """All measurements as a dict: the ``FIELDS`` (``loss`` and ``grad_norm`` at ``w``)
        plus ``losses`` and ``grad_changes``, one per step size."""
        import tensorflow as tf

        weights = [v.value for v in self.model.trainable_variables]
        loss0, grad0 = self._loss_and_grad(weights)
        grad_norm = float(tf.linalg.global_norm(grad0))
        losses, changes = [], []
        for eta in self.step_sizes:
            moved = [w - float(eta) * g for w, g in zip(weights, grad0)]
            loss, grad = self._loss_and_grad(moved)
            losses.append(float(loss))
            changes.append(float(tf.linalg.global_norm([a - b for a, b in zip(grad, grad0)])))
        losses, changes = np.array(losses), np.array(changes)
        everything = np.append(losses, float(loss0))
        return {
            "loss": float(loss0),
            "grad_norm": grad_norm,
            "losses": losses,
            "grad_changes": changes,
            "loss_range": float(everything.max() - everything.min()),
            "grad_change": float(changes.max()),
            "beta": float(np.max(changes / (self.step_sizes * max(grad_norm, 1e-12)))),
        }

    def __call__(self, model=None) -> np.ndarray:
        if model is not None and model is not self.model:
            raise ValueError("this probe was built for another model")
        result = self.measure()
        return np.array([result[k] for k in self.FIELDS])
