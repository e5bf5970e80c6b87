"""bnhelpers.training.legacy: TF1 graph-mode BN through tf-keras.

tf-keras must be chosen before TensorFlow loads, and this pytest process runs
Keras 3, so the graph-mode checks run once in a child process that prints its
measurements as JSON; the tests below assert on them. Argument checks run here.
"""

import json

import numpy as np
import pytest

from bnhelpers.environment import run_python
from bnhelpers.training import legacy

CHILD = r"""
import json
from bnhelpers import setup
setup(0, legacy_keras=True)
import numpy as np
import tensorflow as tf
from bnhelpers.training import legacy

v1 = tf.compat.v1
rng = np.random.default_rng(0)
x = rng.normal(2.0, 3.0, (90, 6)).astype(np.float32)
y = rng.integers(0, 3, 90)
out = {}

net = legacy.build_graph_mlp(6, 3, (5, 4, 3), activation="relu", seed=1)
out["update_ops_bn"] = len(net.update_ops)
out["update_ops_nobn"] = len(legacy.build_graph_mlp(6, 3, (5, 4), bn=False).update_ops)

# momentum 0: after one step the moving statistics are that batch's (biased) statistics
net = legacy.build_graph_mlp(6, 3, (5,), momentum=0.0, learning_rate=0.5, seed=1)
with v1.Session(graph=net.graph) as s:
    s.run(net.init_op)
    h = s.run(net.graph.get_tensor_by_name("dense_0/MatMul:0"), net.feed(x[:30], y[:30], True))
    s.run(net.train_op, net.feed(x[:30], y[:30], True))
    stats = legacy.moving_statistics(s, net.graph)
out["mean_err"] = float(np.abs(stats["bn_0/moving_mean"] - h.mean(0)).max())
out["var_err"] = float(np.abs(stats["bn_0/moving_variance"] - h.var(0)).max())

runs = {}
for updates in (False, True):
    for repeat in range(2):
        net = legacy.build_graph_mlp(6, 3, (8,), run_update_ops=updates, seed=3)
        with v1.Session(graph=net.graph) as s:
            s.run(net.init_op)
            losses = legacy.train_epochs(s, net, x, y, epochs=2, batch_size=16, seed=5)
            stats = legacy.moving_statistics(s, net.graph)
            full = legacy.evaluate(s, net, x, y)
            batched = legacy.evaluate(s, net, x, y, batch_size=16)
            manual = [s.run([net.loss, net.accuracy], net.feed(x[i:i + 16], y[i:i + 16], False))
                      for i in range(0, 90, 16)]
        runs[(updates, repeat)] = losses
        out[f"updates={updates}"] = {
            "steps": len(losses),
            "moving_mean_absmax": float(np.abs(stats["bn_0/moving_mean"]).max()),
            "moving_variance_dev": float(np.abs(stats["bn_0/moving_variance"] - 1).max()),
            "full": full, "batched": batched,
            "unweighted_loss": float(np.mean([loss for loss, _ in manual])),
        }
out["repeat_diff"] = float(np.abs(runs[(True, 0)] - runs[(True, 1)]).max())

a = rng.normal(0.0, 1.0, (500, 2)).astype(np.float32)
b = rng.normal(4.0, 1.0, (500, 2)).astype(np.float32)
for mode in ("shared", "concat", "separate"):
    r = legacy.batch_norm_on_streams([a, b], mode=mode, steps=300, momentum=0.9)
    out[mode] = {k: np.asarray(getattr(r, k)).tolist() for k in
                 ("train_mean", "test_mean", "moving_mean", "moving_variance", "n_variables", "n_update_ops")}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def child():
    done = run_python(CHILD, timeout=600, what="the tf-keras graph-mode checks")
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_update_ops_hold_two_ops_per_bn_layer(child):
    assert child["update_ops_bn"] == 6
    assert child["update_ops_nobn"] == 0


def test_update_with_momentum_zero_stores_the_batch_statistics(child):
    assert child["mean_err"] < 1e-5
    assert child["var_err"] < 1e-5


def test_without_update_ops_the_moving_statistics_never_move(child):
    frozen, updated = child["updates=False"], child["updates=True"]
    assert frozen["steps"] == updated["steps"] == 2 * 6
    assert frozen["moving_mean_absmax"] == 0.0 and frozen["moving_variance_dev"] == 0.0
    assert updated["moving_mean_absmax"] > 0.1


def test_batched_evaluation_weights_batches_by_size(child):
    for key in ("updates=False", "updates=True"):
        run = child[key]
        np.testing.assert_allclose(run["batched"], run["full"], rtol=1e-5, atol=1e-6)
    # 90 = 5 x 16 + 10: the plain mean of the batch losses is not the loss
    run = child["updates=True"]
    assert abs(run["unweighted_loss"] - run["full"][0]) > 1e-4


def test_same_seed_same_run(child):
    assert child["repeat_diff"] < 1e-6


def test_streams(child):
    shared, concat, separate = child["shared"], child["concat"], child["separate"]
    assert (shared["n_variables"], shared["n_update_ops"]) == (4, 4)
    assert (concat["n_variables"], concat["n_update_ops"]) == (4, 2)
    assert (separate["n_variables"], separate["n_update_ops"]) == (8, 4)
    # shared: each call normalizes with its own batch, the moving mean lands between the streams
    np.testing.assert_allclose(shared["train_mean"], [0, 0], atol=1e-4)
    np.testing.assert_allclose(shared["moving_mean"], [[2.0, 2.0]], atol=0.3)
    np.testing.assert_allclose(shared["test_mean"], [-2.0, 2.0], atol=0.3)
    # concat: the statistics of the mixture (variance 1 + 2^2), the same in both modes
    np.testing.assert_allclose(concat["moving_variance"], [[5.0, 5.0]], rtol=0.2)
    np.testing.assert_allclose(concat["train_mean"], concat["test_mean"], atol=0.1)
    # separate: every stream keeps its own statistics
    np.testing.assert_allclose(separate["moving_mean"], [[0, 0], [4, 4]], atol=0.3)
    np.testing.assert_allclose(separate["test_mean"], [0, 0], atol=0.2)


def test_argument_checks_run_before_tensorflow_is_touched():
    with pytest.raises(ValueError, match="activation must be one of .*got 'gelu'"):
        legacy.build_graph_mlp(4, 3, activation="gelu")
    with pytest.raises(ValueError, match=r"widths must be a non-empty list of positive ints, got \(\)"):
        legacy.build_graph_mlp(4, 3, widths=())
    with pytest.raises(ValueError, match="mode must be one of .*got 'mixed'"):
        legacy.batch_norm_on_streams([np.zeros((4, 2))] * 2, mode="mixed")
    with pytest.raises(ValueError, match="give at least two streams"):
        legacy.batch_norm_on_streams([np.zeros((4, 2))])
    with pytest.raises(ValueError, match=r"every stream must have shape \(N_s, C\) with the same C"):
        legacy.batch_norm_on_streams([np.zeros((4, 2)), np.zeros((4, 3))])


def test_keras_3_process_gets_a_clear_error():
    # this pytest process runs Keras 3 (tests/conftest.py), like a notebook without legacy_keras=True
    with pytest.raises(RuntimeError, match=r"tf.compat.v1.layers needs tf-keras: .*setup\(seed, legacy_keras=True\)"):
        legacy.build_graph_mlp(4, 3)
    with pytest.raises(RuntimeError, match=r"tf.compat.v1.layers needs tf-keras: .*setup\(seed, legacy_keras=True\)"):
        legacy.batch_norm_on_streams([np.zeros((4, 2))] * 2)
