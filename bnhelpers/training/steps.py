"""One gradient step, written once: every training loop of the package takes its steps here.

A step calls the model with an explicit ``training`` flag (``True`` by default, so BN
normalizes with the batch's statistics and updates its moving averages), computes
``loss_fn(y, output)`` under a ``tf.GradientTape`` and lets a Keras optimizer apply the
gradients of ``model.trainable_variables``. Variables the loss does not depend on (no
gradient) are left alone. It runs eagerly, inside a ``tf.function`` and inside
``strategy.run`` alike.

- :data:`OPTIMIZERS` / :func:`make_optimizer`: the optimizers the book uses, by name;
- :func:`gradient_step`: the step (``CompiledTrainer``, ``fit_regression``,
  ``train_replicated`` and :func:`sgd_step` use it);
- :func:`sgd_step`: one plain SGD step with a fresh optimizer, for experiments that
  map out what ``training`` and ``trainable`` do (chapter 5).

The TF1 graphs of :mod:`bnhelpers.training.legacy` build their step as a graph op instead
(``optimizer.minimize`` under ``tf.control_dependencies``): that is chapter 3's lesson.

Chapters: 5, 11.
"""

from __future__ import annotations

import keras
import tensorflow as tf

__all__ = ["OPTIMIZERS", "make_optimizer", "gradient_step", "sgd_step"]

OPTIMIZERS = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam}


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """A fresh ``keras.optimizers.SGD`` or ``Adam`` (``name`` ``"sgd"`` or ``"adam"``) with its defaults."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    return OPTIMIZERS[name](learning_rate=float(learning_rate))  # Keras rejects an int


def gradient_step(model, optimizer, loss_fn, x, y, *, training: bool = True):
    """One step of ``optimizer`` on ``loss_fn(y, model(x, training=training))``; returns the loss tensor."""
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=training))
    pairs = [(g, v) for g, v in zip(tape.gradient(loss, variables), variables) if g is not None]
    if pairs:  # a frozen model has nothing to update
        optimizer.apply_gradients(pairs)
    return loss


def sgd_step(model, x, y=None, *, training: bool, learning_rate: float = 0.1, loss_fn=None) -> float:
    """One plain gradient-descent step on ``model.trainable_variables``; returns the loss.

    ``loss_fn(y, output)`` defaults to the mean squared output when ``y`` is None and to
    the mean squared error otherwise. ``training`` must be given: the point of this
    function is to make the flag explicit.
    """
    if not isinstance(training, bool):
        raise TypeError(f"training must be True or False, got {training!r}")
    if loss_fn is None:
        loss_fn = (lambda _, out: tf.reduce_mean(out**2)) if y is None else \
            (lambda target, out: tf.reduce_mean((out - target) ** 2))
    optimizer = make_optimizer("sgd", learning_rate)
    return float(gradient_step(model, optimizer, loss_fn, x, y, training=training))
