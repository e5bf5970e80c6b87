"""A compiled SGD loop for experiments that need many short runs (several seeds, sweeps).

:func:`bnhelpers.training.train` calls ``train_on_batch`` once per step; here a
whole chunk of steps runs inside one ``tf.function`` (a ``tf.while_loop``), which
is several times faster for the small models of the book.

Conventions:

- A *schedule* is an int32 array of shape ``(steps, batch_size)``: row ``t``
  holds the indices into ``x``/``y`` of the examples of step ``t``.
  :func:`shuffled_schedule` gives ordinary i.i.d. mini-batches (epochs of
  permutations), :func:`class_grouped_schedule` non-i.i.d. batches drawn from a
  few classes each.
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
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

__all__ = ["shuffled_schedule", "class_grouped_schedule", "CompiledTrainer", "train_with_evaluation",
           "train_seeds", "accuracy"]


def _check_positive(**values):
    for name, value in values.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def shuffled_schedule(n: int, batch_size: int, steps: int, seed: int = 0) -> np.ndarray:
    """``(steps, batch_size)`` indices: successive epochs of seeded permutations of ``range(n)``.

    Each epoch contributes ``n // batch_size`` full batches (the remainder is dropped).
    """
    _check_positive(n=n, batch_size=batch_size, steps=steps)
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} is larger than the data set ({n})")
    rng = np.random.default_rng(seed)
    per_epoch = n // batch_size
    epochs = -(-steps // per_epoch)
    rows = [rng.permutation(n)[: per_epoch * batch_size].reshape(per_epoch, batch_size) for _ in range(epochs)]
    return np.concatenate(rows)[:steps].astype(np.int32)


def class_grouped_schedule(labels, batch_size: int, classes_per_batch: int, steps: int,
                           seed: int = 0) -> np.ndarray:
    """``(steps, batch_size)`` indices of non-i.i.d. batches (Ioffe 2017's setting).

    Every batch picks ``classes_per_batch`` distinct classes at random and takes
    ``batch_size // classes_per_batch`` random examples of each (without
    replacement within a batch), so a batch holds only a few classes.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    _check_positive(batch_size=batch_size, classes_per_batch=classes_per_batch, steps=steps)
    classes = np.unique(labels)
    if classes_per_batch > len(classes):
        raise ValueError(f"classes_per_batch {classes_per_batch} exceeds the {len(classes)} classes")
    if batch_size % classes_per_batch:
        raise ValueError(f"batch_size {batch_size} is not a multiple of classes_per_batch {classes_per_batch}")
    per_class = batch_size // classes_per_batch
    members = [np.flatnonzero(labels == c) for c in classes]
    if min(len(m) for m in members) < per_class:
        raise ValueError(f"some class has fewer than {per_class} examples")
    rng = np.random.default_rng(seed)
    out = np.empty((steps, batch_size), dtype=np.int32)
    for t in range(steps):
        chosen = rng.choice(len(classes), size=classes_per_batch, replace=False)
        out[t] = np.concatenate([rng.choice(members[c], size=per_class, replace=False) for c in chosen])
    return out


def accuracy(model, x, y, *, training: bool = False) -> float:
    """Fraction of ``argmax(model(x)) == y``.

    ``training=True`` normalizes ``x`` with its own batch statistics, through
    ``stateless_call``: the moving statistics are not updated.
    """
    import tensorflow as tf

    import keras

    x = tf.constant(np.asarray(x, dtype=keras.config.floatx()))
    if training:
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        logits, _ = model.stateless_call(trainable, non_trainable, x, training=True)
    else:
        logits = model(x, training=False)
    return float(np.mean(np.argmax(np.asarray(logits), axis=-1) == np.asarray(y)))


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
        variables = self.model.trainable_variables
        for t in tf.range(steps):
            xb = tf.gather(self._x, schedule[t])
            yb = tf.gather(self._y, schedule[t])
            with tf.GradientTape() as tape:
                loss = self._loss(yb, self.model(xb, training=True))
            grads = tape.gradient(loss, variables)
            self.optimizer.apply_gradients(zip(grads, variables))
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
    :meth:`bnhelpers.norm_variants.RenormRamp.update`).
    """
    _check_positive(eval_every=eval_every)
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
    Noise layers (:mod:`bnhelpers.norm_variants`) are reseeded with the seed.
    Pass ``trainer`` to reuse an earlier trace (e.g. across learning rates).
    The trainer's model keeps the weights of the last seed.
    """
    from .norm_variants import reseed_noise

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
