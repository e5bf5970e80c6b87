"""bnhelpers.training.distributed: synchronized BN over replicas equals one device over the global batch.

Splitting the CPU into logical devices must happen before TensorFlow's runtime starts
(``setup(seed, logical_cpus=n)``), so the multi-replica checks run in a fresh Python process;
the pytest process itself (one CPU device, set up by conftest) runs single-replica and error checks.
"""

import json
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from bnhelpers.data import Split, load_digits
from bnhelpers.environment import run_python
from bnhelpers.training.distributed import (mirrored_strategy, replica_devices, replicated_bn_step,
                                            train_replicated)
from bnhelpers.models.mlp import build_mlp

MULTI_REPLICA_SCRIPT = textwrap.dedent("""
    import json
    from bnhelpers import setup
    rng = setup(0, logical_cpus=3)
    setup(0, logical_cpus=3)   # asking again for the same split changes nothing
    import tensorflow as tf
    from bnhelpers.training.distributed import (mirrored_strategy, replica_devices, replicated_bn_step,
                                                train_replicated)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    import keras
    import numpy as np
    from bnhelpers.data import Split, load_digits
    from bnhelpers.models.mlp import build_mlp

    out = {"devices": devices, "replica_devices": replica_devices(3)}
    x = (rng.normal(0, 1, (12, 2, 2, 3)) * [1, 3, 0.5] + np.arange(12)[:, None, None, None]).astype("float32")
    single = keras.layers.BatchNormalization(momentum=0.0)
    y = single(x, training=True).numpy()
    for sync in (True, False):
        step = replicated_bn_step(x, mirrored_strategy(3), synchronized=sync)
        out[str(sync)] = {
            "copies": [len(step.means), len(step.variances)],
            "out_err": float(np.abs(step.outputs - y).max()),
            "mean_err": float(np.abs(step.means - single.moving_mean.numpy()).max()),
            "var_err": float(np.abs(step.variances - single.moving_variance.numpy()).max()),
            "slice_mean_err": float(np.abs(step.means - x.reshape(3, -1, 3).mean(axis=1)).max()),
            "slice_var_err": float(np.abs(step.variances - x.reshape(3, -1, 3).var(axis=1)).max()),
        }
    d = load_digits()
    small = Split(d.x_train[:240], d.y_train[:240], d.x_test, d.y_test)
    runs = {}
    for n, sync in ((1, False), (3, True), (3, False)):
        norm = lambda: keras.layers.BatchNormalization(synchronized=sync)
        run = train_replicated(lambda: build_mlp(64, 10, (16,), bn="pre", norm_factory=norm), small,
                               mirrored_strategy(n), global_batch=6, epochs=2)
        runs[f"{n}-{sync}"] = run.epoch_losses + [run.test_accuracy]
    out["runs"] = runs
    print("RESULT" + json.dumps(out))
""")


@pytest.fixture(scope="module")
def multi_replica():
    proc = run_python(MULTI_REPLICA_SCRIPT, timeout=600, what="the multi-replica script")
    line = next(li for li in proc.stdout.splitlines() if li.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


def test_logical_cpus_become_replica_devices(multi_replica):
    assert multi_replica["devices"] == [f"/device:CPU:{i}" for i in range(3)]
    assert multi_replica["replica_devices"] == multi_replica["devices"]


def test_synchronized_bn_equals_one_device_over_the_global_batch(multi_replica):
    sync = multi_replica["True"]
    assert sync["out_err"] < 1e-5 and sync["mean_err"] < 1e-5 and sync["var_err"] < 1e-4


def test_per_replica_bn_uses_each_slice_and_differs(multi_replica):
    local = multi_replica["False"]
    assert local["copies"] == [3, 3] and multi_replica["True"]["copies"] == [3, 3]
    assert local["slice_mean_err"] < 1e-5 and local["slice_var_err"] < 1e-4
    assert local["out_err"] > 0.1 and local["mean_err"] > 0.1


def test_synchronized_training_follows_the_single_device_run(multi_replica):
    runs = multi_replica["runs"]
    np.testing.assert_allclose(runs["3-True"], runs["1-False"], atol=1e-3)
    assert abs(runs["3-False"][0] - runs["1-False"][0]) > 1e-3


def test_single_replica_in_process():
    assert [d.name for d in tf.config.list_logical_devices("CPU")] == ["/device:CPU:0"]
    x = np.random.default_rng(0).normal(1, 2, (8, 3)).astype(np.float32)
    single = keras.layers.BatchNormalization(momentum=0.0)
    y = single(x, training=True).numpy()
    for sync in (True, False):
        step = replicated_bn_step(x, mirrored_strategy(1), synchronized=sync)
        np.testing.assert_allclose(step.outputs, y, atol=1e-5)
        np.testing.assert_allclose(step.means[0], single.moving_mean.numpy(), atol=1e-5)
    assert mirrored_strategy(1) is mirrored_strategy(1)


def test_bad_arguments():
    # setup's own checks of logical_cpus are in test_environment.py
    with pytest.raises(ValueError, match="n must be a positive int, got True"):
        replica_devices(True)
    with pytest.raises(ValueError, match=r"setup\(seed, logical_cpus=64\)"):
        replica_devices(64)
    with pytest.raises(TypeError, match=r"x must be a float32 array of rank >= 2, got float64 of rank 2"):
        replicated_bn_step(np.ones((4, 2)), mirrored_strategy(1), synchronized=True)
    d = load_digits()
    small = Split(d.x_train[:20], d.y_train[:20], d.x_test[:5], d.y_test[:5])
    build = lambda: build_mlp(64, 10, (4,))  # noqa: E731
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        train_replicated(build, small, mirrored_strategy(1), global_batch=4, epochs=0)
    with pytest.raises(ValueError, match="larger than the training set"):
        train_replicated(build, small, mirrored_strategy(1), global_batch=32, epochs=1)
