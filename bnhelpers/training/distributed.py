"""Batch normalization under data parallelism: ``tf.distribute.MirroredStrategy`` replicas.

Each of ``n`` replicas holds a copy of the model and gets ``global_batch / n`` examples
per step. ``keras.layers.BatchNormalization()`` then normalizes each replica's slice with
that slice's own statistics (*per-replica* BN); ``BatchNormalization(synchronized=True)``
all-reduces the per-channel sums, sums of squares and counts over the replicas first, so
every replica normalizes with the statistics of the whole global batch, exactly as one
device would (*synchronized* BN).

The same code runs on one machine with several GPUs (one replica per GPU) and, for this
book, on a CPU split into several *logical* devices (``bnhelpers.setup(seed, logical_cpus=n)``).
:func:`replica_devices` picks GPUs when enough are visible and logical CPUs otherwise.

Conventions: global batches are split into contiguous slices, replica ``i`` gets rows
``i * k : (i + 1) * k`` with ``k = N / n``; ``N`` must be divisible by ``n``.

Chapters: 8.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from ..tools.probes import logits_accuracy
from .steps import gradient_step

__all__ = [
    "replica_devices",
    "mirrored_strategy",
    "replica_values",
    "ReplicaStep",
    "replicated_bn_step",
    "ReplicatedRun",
    "train_replicated",
]


def replica_devices(n: int) -> list[str]:
    """``n`` device names for ``n`` replicas: the first ``n`` GPUs if that many are visible,
    otherwise ``n`` logical CPUs (``ValueError`` if fewer exist: see ``setup(logical_cpus=n)``)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) >= n:
        return [d.name for d in gpus[:n]]
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) < n:
        raise ValueError(f"{n} replicas need {n} devices, but TensorFlow sees {len(gpus)} GPU(s) and "
                         f"{len(cpus)} CPU device(s); start the process with setup(seed, logical_cpus={n})")
    return [d.name for d in cpus[:n]]


@functools.lru_cache(maxsize=None)
def _strategy(devices: tuple[str, ...]) -> tf.distribute.MirroredStrategy:
    if all("GPU" in d.upper() for d in devices):
        return tf.distribute.MirroredStrategy(list(devices))  # NCCL all-reduce
    # CPU collectives number their groups per strategy object, so two strategies in one
    # process collide ("joining a group with size 4, but that group has size 2").
    return tf.distribute.MirroredStrategy(list(devices), cross_device_ops=tf.distribute.ReductionToOneDevice())


def mirrored_strategy(n: int) -> tf.distribute.MirroredStrategy:
    """A ``MirroredStrategy`` with ``n`` replicas on :func:`replica_devices` (one object per device set)."""
    return _strategy(tuple(replica_devices(n)))


def replica_values(variable, strategy) -> list[np.ndarray]:
    """Each replica's copy of a (mirrored) variable, as NumPy arrays, in replica order.

    ``variable``: a ``keras.Variable`` (its TensorFlow variable is used) or a ``tf.Variable``.
    """
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return [np.asarray(v.numpy()) for v in strategy.experimental_local_results(variable)]


def _split(x, strategy):
    n = strategy.num_replicas_in_sync
    if x.shape[0] % n:
        raise ValueError(f"the global batch of {x.shape[0]} does not split evenly over {n} replicas")
    k = x.shape[0] // n
    return strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(x[ctx.replica_id_in_sync_group * k:(ctx.replica_id_in_sync_group + 1) * k]))


@dataclass(frozen=True)
class ReplicaStep:
    """One training-mode BN step over a global batch ``x`` of shape ``(N, ..., C)``.

    ``outputs``: ``(N, ..., C)``, the replicas' outputs concatenated in order.
    ``means``, ``variances``: ``(replicas, C)``, each replica's copy of the moving mean and
    variance after the step (momentum 0, so these are the statistics it normalized with).
    """

    outputs: np.ndarray
    means: np.ndarray
    variances: np.ndarray


def replicated_bn_step(x, strategy, *, synchronized: bool, epsilon: float = 1e-3) -> ReplicaStep:
    """Run a fresh ``keras.layers.BatchNormalization(momentum=0)`` once in training mode on
    every replica of ``strategy``, each on its slice of ``x`` (float32, channels last)."""
    x = np.asarray(x)
    if x.dtype != np.float32 or x.ndim < 2:
        raise TypeError(f"x must be a float32 array of rank >= 2, got {x.dtype} of rank {x.ndim}")
    with strategy.scope():
        bn = keras.layers.BatchNormalization(momentum=0.0, epsilon=epsilon, synchronized=synchronized)
        bn.build((None, *x.shape[1:]))

    @tf.function
    def step(batch):
        return strategy.run(lambda v: bn(v, training=True), args=(batch,))

    outputs = np.concatenate([o.numpy() for o in strategy.experimental_local_results(step(_split(x, strategy)))])
    return ReplicaStep(outputs, np.stack(replica_values(bn.moving_mean, strategy)),
                       np.stack(replica_values(bn.moving_variance, strategy)))


@dataclass(frozen=True)
class ReplicatedRun:
    """Result of :func:`train_replicated`: ``epoch_losses`` (mean training loss of each
    epoch), ``test_accuracy`` (inference mode, replica 0's moving statistics) and ``model``."""

    epoch_losses: list[float]
    test_accuracy: float
    model: keras.Model


def train_replicated(build_model: Callable[[], keras.Model], split, strategy, *, global_batch: int,
                     epochs: int, learning_rate: float = 0.1, seed: int = 0) -> ReplicatedRun:
    """Train ``build_model()`` (logits, integer labels) with SGD on ``strategy``'s replicas.

    A custom loop: every step, each replica takes ``global_batch / replicas`` examples of the
    shuffled training set, computes its share of the mean cross-entropy over the *global*
    batch, and the strategy sums the gradients over replicas; incomplete batches are dropped.
    ``split``: a :class:`bnhelpers.data.Split`. The model is built inside ``strategy.scope()``.
    """
    replicas = strategy.num_replicas_in_sync
    if global_batch < replicas or global_batch % replicas:
        raise ValueError(f"global_batch {global_batch} must be a positive multiple of {replicas} replicas")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    steps = len(split.x_train) // global_batch
    if steps < 1:
        raise ValueError(f"global_batch {global_batch} is larger than the training set")
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        model = build_model()
        optimizer = keras.optimizers.SGD(learning_rate)
        optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    data = (tf.data.Dataset.from_tensor_slices((split.x_train, split.y_train))
            .shuffle(len(split.x_train), seed=seed).batch(global_batch, drop_remainder=True).repeat(epochs))
    iterator = iter(strategy.experimental_distribute_dataset(data))

    def replica_step(x, y):  # this replica's share of the mean loss over the global batch
        return gradient_step(model, optimizer, lambda y, out: tf.reduce_sum(loss_fn(y, out)) / global_batch, x, y)

    @tf.function
    def run_epoch(iterator, n_steps):
        total = tf.constant(0.0, tf.float64)
        for _ in tf.range(n_steps):
            x, y = next(iterator)
            total += tf.cast(strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica_step, args=(x, y)),
                                             axis=None), tf.float64)
        return total / tf.cast(n_steps, tf.float64)

    losses = [float(run_epoch(iterator, tf.constant(steps))) for _ in range(epochs)]
    logits = model(split.x_test, training=False)
    accuracy = logits_accuracy(logits, split.y_test)
    return ReplicatedRun(losses, accuracy, model)
