"""A compiled SGD loop for experiments that need many short runs (several seeds, sweeps).

:func:`bnhelpers.training.loop.train` calls ``train_on_batch`` once per step; here a
whole chunk of steps runs inside one ``tf.function`` (a ``tf.while_loop``), which
is several times faster for the small models of the book.

Conventions:

- A *schedule* is an int32 array of shape ``(steps, batch_size)``: row ``t``
  holds the indices into ``x``/``y`` of the examples of step ``t``
  (:mod:`bnhelpers.training.batches` makes them).
- :class:`CompiledTrainer` trains a Keras classifier that outputs logits for
  integer labels ``y`` (shape ``(N,)``) with plain SGD and sparse softmax
  cross-entropy. The learning rate is a variable, so changing it never
  retraces; :meth:`CompiledTrainer.load` puts fresh weights into the same
  traced model, so many seeds can share one trace.
- :func:`train_with_evaluation` runs a schedule in chunks of ``eval_every``
  steps and calls named probes ``probe(model) -> value`` after each chunk.
- :func:`train_seeds` repeats that for several seeds on one traced model.
- Features are cast to ``keras.config.floatx()`` (float32 unless a chapter
  trains in float64, see the README's "Writing a chapter").

Chapters: 6, 7, 10, 11.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from ..core.validation import check_positive_int
from ..layers.variants import reseed_noise
from .steps import gradient_step

__all__ = ["CompiledTrainer", "train_with_evaluation", "train_seeds"]


class CompiledTrainer:
    """Plain SGD on ``model`` (logits) and ``(x, y)``, many steps per ``tf.function`` call.

    ``x``: ``(N, ...)`` floats (cast to ``keras.config.floatx()``), ``y``: ``(N,)`` integer labels. Create one
    trainer per architecture and reuse it across seeds with :meth:`load`.
    """

    def __init__(self, model, x, y, learning_rate: float = 0.1):
        import keras
        import tensorflow as tf

        x, y = np.asarray(x), np.asarray(y)
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"x must be a float array, got {x.dtype}")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise TypeError(f"y must be a 1-D array of integer labels, got {y.dtype} with shape {y.shape}")
        if len(x) != len(y):
            raise ValueError(f"x and y disagree in length: {len(x)} vs {len(y)}")
        if learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {learning_rate}")
        self.model = model
        self.n = len(x)
        self._x, self._y = tf.constant(x.astype(keras.config.floatx())), tf.constant(y.astype(np.int32))
        self.optimizer = keras.optimizers.SGD(learning_rate=learning_rate)
        self.optimizer.build(model.trainable_variables)
        self._loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self._run = tf.function(self._steps, input_signature=[tf.TensorSpec([None, None], tf.int32)])

    @property
    def learning_rate(self) -> float:
        return float(np.asarray(self.optimizer.learning_rate))

    def set_learning_rate(self, value: float) -> None:
        if value <= 0:
            raise ValueError(f"learning_rate must be positive, got {value}")
        self.optimizer.learning_rate.assign(value)

    def load(self, weights) -> None:
        """Set every model weight (``model.get_weights()`` order, e.g. from a freshly built twin)."""
        self.model.set_weights(weights)

    def _steps(self, schedule):
        import tensorflow as tf

        steps = tf.shape(schedule)[0]
        losses = tf.TensorArray(tf.float64, size=steps)
        for t in tf.range(steps):
            xb = tf.gather(self._x, schedule[t])
            yb = tf.gather(self._y, schedule[t])
            loss = gradient_step(self.model, self.optimizer, self._loss, xb, yb)
            losses = losses.write(t, tf.cast(loss, tf.float64))
        return losses.stack()

    def run(self, schedule) -> np.ndarray:
        """Take one SGD step per row of ``schedule``; return the training losses, shape ``(steps,)``."""
        schedule = np.asarray(schedule)
        if schedule.ndim != 2 or schedule.shape[0] < 1 or schedule.shape[1] < 1:
            raise ValueError(f"schedule must have shape (steps, batch_size), got {schedule.shape}")
        if schedule.min() < 0 or schedule.max() >= self.n:
            raise ValueError(f"schedule indices must lie in [0, {self.n})")
        return self._run(schedule.astype(np.int32)).numpy()


def train_with_evaluation(trainer: CompiledTrainer, schedule, eval_every: int,
                          probes: Mapping[str, Callable] | None = None, *,
                          stop: Callable[[dict], bool] | None = None,
                          before_chunk: Callable[[int], object] | None = None) -> dict:
    """Run ``schedule`` in chunks of ``eval_every`` steps and probe the model after each chunk.

    Probes are also called once before the first step (step 0). Returns a dict
    with ``"step"`` (steps taken at each probe, shape ``(E,)``), ``"loss"``
    (every training loss, ``(steps,)``) and one stacked array per probe,
    ``(E, ...)``. ``stop(record_so_far)`` (lists so far) returning True ends
    training early; ``before_chunk(steps_taken)`` runs before each chunk (e.g.
    :meth:`bnhelpers.layers.variants.RenormRamp.update`).
    """
    check_positive_int(eval_every=eval_every)
    schedule = np.asarray(schedule)
    probes = dict(probes or {})
    if "step" in probes or "loss" in probes:
        raise ValueError("probe names 'step' and 'loss' are reserved")
    record = {"step": [0], "loss": [], **{k: [np.asarray(p(trainer.model))] for k, p in probes.items()}}
    for start in range(0, len(schedule), eval_every):
        if before_chunk is not None:
            before_chunk(start)
        record["loss"].extend(trainer.run(schedule[start:start + eval_every]))
        record["step"].append(min(start + eval_every, len(schedule)))
        for k, p in probes.items():
            record[k].append(np.asarray(p(trainer.model)))
        if stop is not None and stop(record):
            break
    return {k: np.asarray(v) for k, v in record.items()}


def train_seeds(make_model: Callable, x, y, *, seeds, schedule: Callable, learning_rate: float,
                eval_every: int, probes: Callable | None = None, stop: Callable | None = None,
                before_chunk: Callable | None = None, trainer: CompiledTrainer | None = None):
    """Train one fresh model per seed; return ``(trainer, [record per seed])``.

    ``make_model(seed)`` builds a fresh model (only its weights are used after
    the first), ``schedule(seed)`` gives its ``(steps, batch_size)`` indices,
    ``probes(model)`` builds the dict of probes once for the traced model.
    Noise layers (:mod:`bnhelpers.layers.variants`) are reseeded with the seed.
    Pass ``trainer`` to reuse an earlier trace (e.g. across learning rates).
    The trainer's model keeps the weights of the last seed.
    """
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must not be empty")
    if trainer is None:
        trainer = CompiledTrainer(make_model(seeds[0]), x, y, learning_rate)
    trainer.set_learning_rate(learning_rate)
    probe_fns = probes(trainer.model) if probes is not None else {}
    records = []
    for seed in seeds:
        trainer.load(make_model(seed).get_weights())
        reseed_noise(trainer.model, seed)
        records.append(train_with_evaluation(trainer, schedule(seed), eval_every, probe_fns,
                                             stop=stop, before_chunk=before_chunk))
    return trainer, records
