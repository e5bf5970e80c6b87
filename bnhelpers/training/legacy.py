"""TF1-style graph-mode batch normalization on today's TensorFlow, through ``tf.compat.v1``.

``tf.compat.v1.layers.batch_normalization`` needs Keras 2 (the ``tf-keras``
package) selected with ``TF_USE_LEGACY_KERAS=1`` *before* TensorFlow loads
Keras: call ``bnhelpers.setup(seed, legacy_keras=True)`` first, in a fresh
process. Every builder here makes its own ``tf.Graph``; run it with
``tf.compat.v1.Session(graph=net.graph)``. Eager execution stays on outside.

- :func:`build_graph_mlp`: placeholders ``x`` ``(None, input_dim)`` float32,
  ``y`` ``(None,)`` int64 labels and a scalar boolean ``phase`` (True =
  training), hidden layers ``dense -> BN -> activation``, softmax
  cross-entropy, plain SGD. ``run_update_ops`` chooses whether the train op
  depends on ``UPDATE_OPS`` (the moving-average updates, 2 per BN layer).
- :func:`train_epochs`, :func:`evaluate` (in batches, weighted by batch size),
  :func:`moving_statistics`.
- :func:`batch_norm_on_streams`: one BN shared by several data streams, or one per stream.

Chapters: 3.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import tensorflow as tf

from ..core.validation import check_widths
from .batches import epoch_batches

__all__ = ["GraphMLP", "build_graph_mlp", "train_epochs", "evaluate", "moving_statistics",
           "StreamReport", "batch_norm_on_streams"]

v1 = tf.compat.v1
ACTIVATIONS = {"relu": tf.nn.relu, "sigmoid": tf.nn.sigmoid, "tanh": tf.nn.tanh}
STREAM_MODES = ("shared", "concat", "separate")


def _require_legacy_keras() -> None:
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise RuntimeError(
            "tf.compat.v1.layers needs tf-keras: start a fresh process with "
            "bnhelpers.setup(seed, legacy_keras=True) before anything imports TensorFlow"
        )


@dataclass(frozen=True)
class GraphMLP:
    """The tensors and ops of a graph-mode MLP (see :func:`build_graph_mlp`)."""

    graph: tf.Graph
    x: tf.Tensor
    y: tf.Tensor
    phase: tf.Tensor
    logits: tf.Tensor
    loss: tf.Tensor
    accuracy: tf.Tensor
    train_op: tf.Operation
    update_ops: tuple
    init_op: tf.Operation

    def feed(self, x, y, training: bool) -> dict:
        """A ``feed_dict`` for one batch."""
        return {self.x: x, self.y: y, self.phase: bool(training)}


def build_graph_mlp(input_dim: int, n_classes: int, widths: Sequence[int] = (100, 100), *,
                    activation: str = "sigmoid", bn: bool = True, learning_rate: float = 0.1,
                    run_update_ops: bool = True, momentum: float = 0.99, seed: int = 0) -> GraphMLP:
    """Build a TF1 MLP in a new graph: ``dense(no bias) -> batch_normalization -> activation`` per layer.

    ``bn=False`` gives ``dense(bias) -> activation``. ``momentum`` is the BN
    layers' moving-average decay. ``run_update_ops=False`` builds the train op
    *without* the control dependency on ``UPDATE_OPS`` (the classic bug).
    Kernels are Glorot uniform with one seed per layer derived from ``seed``, so
    nets that differ only in ``run_update_ops`` (or ``momentum``) start equal.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    widths = check_widths(widths)
    if input_dim < 1 or n_classes < 2:
        raise ValueError("input_dim must be >= 1 and n_classes >= 2")
    if learning_rate <= 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    _require_legacy_keras()
    graph = tf.Graph()
    with graph.as_default(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.compat.v1.layers announces its deprecation
        x = v1.placeholder(tf.float32, (None, input_dim), name="x")
        y = v1.placeholder(tf.int64, (None,), name="y")
        phase = v1.placeholder(tf.bool, (), name="phase")
        h = x
        for i, width in enumerate(widths):
            h = v1.layers.dense(h, int(width), use_bias=not bn, name=f"dense_{i}",
                                kernel_initializer=v1.glorot_uniform_initializer(seed=seed * 1000 + i))
            if bn:
                h = v1.layers.batch_normalization(h, momentum=momentum, training=phase, name=f"bn_{i}")
            h = ACTIVATIONS[activation](h, name=f"{activation}_{i}")
        logits = v1.layers.dense(h, n_classes, name="logits", kernel_initializer=v1.glorot_uniform_initializer(
            seed=seed * 1000 + len(widths)))
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits), name="loss")
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.float32),
                                  name="accuracy")
        update_ops = tuple(v1.get_collection(v1.GraphKeys.UPDATE_OPS))
        optimizer = v1.train.GradientDescentOptimizer(learning_rate)
        with tf.control_dependencies(list(update_ops) if run_update_ops else []):
            train_op = optimizer.minimize(loss)
        init_op = v1.global_variables_initializer()
    return GraphMLP(graph, x, y, phase, logits, loss, accuracy, train_op, update_ops, init_op)


def _batches(n: int, batch_size: int):
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, start + batch_size)


def train_epochs(sess, net: GraphMLP, x, y, *, epochs: int, batch_size: int, seed: int = 0) -> np.ndarray:
    """Run ``net.train_op`` on shuffled mini-batches (``phase=True``); return each step's loss.

    The order is :func:`bnhelpers.training.batches.epoch_batches` (a NumPy permutation per
    epoch drawn from ``seed``), so two nets trained with the same seed see the same batches.
    """
    if len(x) != len(y):
        raise ValueError(f"x and y disagree in length: {len(x)} vs {len(y)}")
    losses = []
    for batches in epoch_batches(len(x), batch_size, epochs=epochs, seed=seed):
        for idx in batches:
            _, loss = sess.run([net.train_op, net.loss], net.feed(x[idx], y[idx], True))
            losses.append(float(loss))
    return np.array(losses)


def evaluate(sess, net: GraphMLP, x, y, *, training: bool = False, batch_size: int | None = None):
    """Mean loss and accuracy over ``x`` in batches of ``batch_size`` (all at once if ``None``).

    Each batch's mean is weighted by its size, so a short last batch counts
    for what it holds. ``training`` is fed to the ``phase`` placeholder.
    """
    if len(x) != len(y):
        raise ValueError(f"x and y disagree in length: {len(x)} vs {len(y)}")
    size = batch_size or len(x)
    total_loss = total_acc = 0.0
    for part in _batches(len(x), size):
        loss, acc = sess.run([net.loss, net.accuracy], net.feed(x[part], y[part], training))
        count = len(x[part])
        total_loss += float(loss) * count
        total_acc += float(acc) * count
    return total_loss / len(x), total_acc / len(x)


def moving_statistics(sess, graph: tf.Graph) -> dict:
    """``{variable name: value}`` for every moving mean and moving variance in ``graph``."""
    with graph.as_default():
        variables = [v for v in v1.global_variables() if "moving_" in v.name]
    return {v.name.split(":")[0]: value for v, value in zip(variables, sess.run(variables))}


@dataclass(frozen=True)
class StreamReport:
    """What BN did to each stream: ``train_mean``/``test_mean`` are the mean output of
    each stream (averaged over features) in training mode (batch statistics) and in
    inference mode (moving statistics); ``moving_mean``/``moving_variance`` are the
    final moving statistics, one row per BN layer; ``n_variables``/``n_update_ops``
    count what the graph holds."""

    train_mean: np.ndarray
    test_mean: np.ndarray
    moving_mean: np.ndarray
    moving_variance: np.ndarray
    n_variables: int
    n_update_ops: int


def batch_norm_on_streams(streams: Sequence[np.ndarray], *, mode: str = "shared", steps: int = 500,
                          batch_size: int = 64, momentum: float = 0.99, seed: int = 0) -> StreamReport:
    """Train-mode updates of BN on several data streams (each ``(N_s, C)`` float32), TF1 style.

    ``mode``:

    - ``"shared"``: one BN (``reuse=True``) called on each stream's batch separately;
    - ``"concat"``: one BN called on the concatenation of the streams' batches;
    - ``"separate"``: one BN per stream.

    Each step draws ``batch_size`` rows from every stream and runs the update
    ops (streams in order, one ``session.run`` per BN call so the order is fixed).
    """
    if mode not in STREAM_MODES:
        raise ValueError(f"mode must be one of {STREAM_MODES}, got {mode!r}")
    if len(streams) < 2:
        raise ValueError("give at least two streams")
    streams = [np.asarray(s, np.float32) for s in streams]
    if any(s.ndim != 2 or s.shape[1] != streams[0].shape[1] for s in streams):
        raise ValueError("every stream must have shape (N_s, C) with the same C")
    if steps < 1 or batch_size < 1:
        raise ValueError("steps and batch_size must be >= 1")
    _require_legacy_keras()
    n_features = streams[0].shape[1]
    graph = tf.Graph()
    with graph.as_default(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        phase = v1.placeholder(tf.bool, (), name="phase")
        inputs = [v1.placeholder(tf.float32, (None, n_features), name=f"stream_{i}")
                  for i in range(len(streams))]

        def bn(t, name, reuse=None):
            return v1.layers.batch_normalization(t, momentum=momentum, training=phase,
                                                 name=name, reuse=reuse)

        if mode == "concat":
            joint = bn(tf.concat(inputs, axis=0), "shared")
            outputs = tf.split(joint, [tf.shape(t)[0] for t in inputs], axis=0)
            calls = [(v1.get_collection(v1.GraphKeys.UPDATE_OPS), tuple(range(len(streams))))]
        else:
            outputs, calls = [], []
            for i, t in enumerate(inputs):
                name = "shared" if mode == "shared" else f"bn_{i}"
                reuse = True if mode == "shared" and i > 0 else None
                before = set(v1.get_collection(v1.GraphKeys.UPDATE_OPS))
                outputs.append(bn(t, name, reuse))
                new = [op for op in v1.get_collection(v1.GraphKeys.UPDATE_OPS) if op not in before]
                calls.append((new, (i,)))
        update_ops = v1.get_collection(v1.GraphKeys.UPDATE_OPS)
        variables = v1.global_variables()
        init_op = v1.global_variables_initializer()
    rng = np.random.default_rng(seed)
    with v1.Session(graph=graph) as sess:
        sess.run(init_op)
        for _ in range(steps):
            batch = {inputs[i]: s[rng.integers(0, len(s), batch_size)] for i, s in enumerate(streams)}
            for ops, members in calls:
                sess.run(ops, {phase: True, **{inputs[i]: batch[inputs[i]] for i in members}})
        full = {t: s for t, s in zip(inputs, streams)}
        train_out = sess.run(outputs, {**full, phase: True})
        test_out = sess.run(outputs, {**full, phase: False})
        stats = moving_statistics(sess, graph)
    means = np.array([v for k, v in sorted(stats.items()) if k.endswith("moving_mean")])
    variances = np.array([v for k, v in sorted(stats.items()) if k.endswith("moving_variance")])
    return StreamReport(
        train_mean=np.array([o.mean() for o in train_out]),
        test_mean=np.array([o.mean() for o in test_out]),
        moving_mean=means, moving_variance=variances,
        n_variables=len(variables), n_update_ops=len(update_ops))
