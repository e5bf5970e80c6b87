"""bnhelpers.training.multiworker: worker processes with MultiWorkerMirroredStrategy on 127.0.0.1.

Every test that starts workers also checks that none of them is left running. The real cluster
(two TensorFlow workers) runs once, in a module fixture: synchronized BN equals one process on the
global batch (float64), per-worker BN does not, and the collective ops and step times are recorded.
"""

import json
import os
import textwrap
import time

import numpy as np
import pytest

from bnhelpers.training.multiworker import (WorkerError, alive, cluster_spec, free_ports, report, run_workers,
                                            task_index, tf_config)

BN_PROGRAM = textwrap.dedent("""
    import sys, time
    from bnhelpers.training.multiworker import worker_setup, report, task_index, collective_ops
    strategy, rng = worker_setup(0)
    import keras, numpy as np, tensorflow as tf
    from bnhelpers.training.steps import gradient_step
    keras.config.set_floatx("float64")
    x = np.load(sys.argv[1])
    n, i = strategy.num_replicas_in_sync, task_index()
    k = len(x) // n
    local = tf.constant(x[i * k:(i + 1) * k])
    labels = tf.constant(np.arange(k) % 4)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    result = {"replicas": n}
    for sync in (True, False):
        with strategy.scope():
            bn = keras.layers.BatchNormalization(momentum=0.0, synchronized=sync)
            bn.build(x.shape)
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input(x.shape[1:]),
                                      keras.layers.Conv2D(8, 3, padding="same", use_bias=False),
                                      keras.layers.BatchNormalization(synchronized=sync), keras.layers.ReLU(),
                                      keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4)])
            opt = keras.optimizers.SGD(0.1)
            opt.build(model.trainable_variables)
        step = tf.function(lambda v: strategy.run(lambda u: bn(u, training=True), args=(v,)))
        out = strategy.experimental_local_results(step(local))[0]
        train = tf.function(lambda v, w: strategy.run(
            lambda a, b: gradient_step(model, opt, lambda y, o: tf.reduce_sum(loss(y, o)) / len(x), a, b),
            args=(v, w)))
        train(local, labels)
        times = []
        for _ in range(20):   # the fastest step: the least disturbed by other load on the machine
            start = time.perf_counter()
            train(local, labels)
            times.append(time.perf_counter() - start)
        result[str(sync)] = {"outputs": out.numpy().tolist(), "mean": bn.moving_mean.numpy().tolist(),
                             "variance": bn.moving_variance.numpy().tolist(),
                             "bn_collectives": collective_ops(step.get_concrete_function(local)),
                             "train_collectives": collective_ops(train.get_concrete_function(local, labels)),
                             "seconds": min(times)}
    report(result)
""")


def _gone(pids):
    """True when none of ``pids`` is a live process (reaped or not: a zombie counts as alive)."""
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] != "Z":
                    return False
        except FileNotFoundError:
            continue
        return False
    return True


_PREEXISTING: set[int] = set()


@pytest.fixture(autouse=True)
def _note_preexisting_children():
    """Children this process had before the test (under pytest-xdist, a worker may still hold the Jupyter
    kernel of a notebook nbval ran before): they are not the test's to end."""
    _PREEXISTING.clear()
    _PREEXISTING.update(_all_children())
    yield


def _children():
    """Children of this process that the test started and left behind."""
    return [pid for pid in _all_children() if pid not in _PREEXISTING]


def _all_children():
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().split(")")[-1].split()[1] == me:
                        found.append(int(entry))
            except (FileNotFoundError, IndexError):
                pass
    return found


def test_free_ports_are_distinct_and_bindable():
    import socket

    ports = free_ports(3)
    assert len(set(ports)) == 3
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
    with pytest.raises(ValueError):
        free_ports(0)


def test_tf_config_is_what_a_cluster_reads():
    cluster = cluster_spec(["10.0.0.1:2222", "10.0.0.2:2222"])
    config = json.loads(tf_config(cluster, 1))
    assert config == {"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]},
                      "task": {"type": "worker", "index": 1}}
    assert cluster_spec([5000])["worker"] == ["127.0.0.1:5000"]
    for bad in (["a:1", "a:1"], ["nohost"], []):
        with pytest.raises(ValueError):
            cluster_spec(bad)
    with pytest.raises(ValueError):
        tf_config(cluster, 2)


def test_report_outside_a_worker_prints(capsys, monkeypatch):
    monkeypatch.delenv("BNHELPERS_WORKER_RESULT", raising=False)
    report({"a": 1})
    assert json.loads(capsys.readouterr().out) == {"a": 1}
    monkeypatch.setenv("TF_CONFIG", tf_config(cluster_spec([1, 2]), 1))
    assert task_index() == 1


def test_results_come_back_in_index_order_without_tensorflow():
    code = ("import os, json; from bnhelpers.training.multiworker import report, task_index; "
            "report({'i': task_index(), 'cluster': json.loads(os.environ['TF_CONFIG'])['cluster']})")
    results = run_workers(code, 3, timeout=30)
    assert [r.result["i"] for r in results] == [0, 1, 2]
    assert len({tuple(r.result["cluster"]["worker"]) for r in results}) == 1
    assert _gone([r.pid for r in results]) and not alive([r.pid for r in results]) and not _children()


def test_a_dying_worker_ends_the_others_with_its_exit_code_and_stderr():
    code = textwrap.dedent("""
        import sys, time
        from bnhelpers.training.multiworker import task_index
        if task_index() == 1:
            print("worker 1: out of memory (simulated)", file=sys.stderr)
            sys.exit(3)
        time.sleep(60)
    """)
    start = time.monotonic()
    with pytest.raises(WorkerError, match=r"worker 1 of 2 exited with code 3(.|\n)*out of memory") as info:
        run_workers(code, 2, timeout=30)
    assert time.monotonic() - start < 15
    assert info.value.workers == [1] and _gone(info.value.pids) and not _children()


def test_a_worker_that_never_joins_is_named_and_all_are_ended():
    # worker 0 reaches the strategy (as worker_strategy marks it) and waits; worker 1 never gets there
    code = textwrap.dedent("""
        import os, time
        from pathlib import Path
        from bnhelpers.training.multiworker import JOINED_VARIABLE, task_index
        if task_index() == 0:
            Path(os.environ[JOINED_VARIABLE] + ".arrived").touch()
        time.sleep(60)
    """)
    start = time.monotonic()
    with pytest.raises(WorkerError, match=r"worker\(s\) \[1\] of 2 never joined the cluster within 2 s") as info:
        run_workers(code, 2, timeout=30, join_timeout=2)
    assert time.monotonic() - start < 15
    assert info.value.workers == [1] and _gone(info.value.pids) and not _children()


def test_timeout_ends_workers_that_joined_but_hang():
    code = textwrap.dedent("""
        import os, time
        from pathlib import Path
        from bnhelpers.training.multiworker import JOINED_VARIABLE
        Path(os.environ[JOINED_VARIABLE]).touch()
        time.sleep(60)
    """)
    with pytest.raises(WorkerError, match=r"did not finish within 2 s") as info:
        run_workers(code, 2, timeout=2)
    assert info.value.workers == [0, 1] and _gone(info.value.pids) and not _children()


def test_argument_checks():
    for bad in (dict(n_workers=0), dict(n_workers=True), dict(timeout=0)):
        with pytest.raises(ValueError):
            run_workers("pass", **bad)


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (8, 3, 3, 2)) * [1.0, 3.0] + np.repeat(np.arange(2.0), 4)[:, None, None, None]
    path = tmp_path_factory.mktemp("batch") / "x.npy"
    np.save(path, x)
    start = time.monotonic()
    results = run_workers(BN_PROGRAM, 2, timeout=55, args=(path,))
    return x, results, time.monotonic() - start


def test_synchronized_bn_across_workers_equals_one_process(cluster_run):
    x, results, seconds = cluster_run
    assert seconds < 55 and _gone([r.pid for r in results]) and not _children()
    assert [r.result["replicas"] for r in results] == [2, 2]
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    expected = (x - mean) / np.sqrt(var + 1e-3)
    sync = np.concatenate([np.array(r.result["True"]["outputs"]) for r in results])
    assert np.abs(sync - expected).max() < 1e-12
    for r in results:
        assert np.abs(np.array(r.result["True"]["mean"]) - mean).max() < 1e-12
        assert np.abs(np.array(r.result["True"]["variance"]) - var).max() < 1e-12
    local = np.concatenate([np.array(r.result["False"]["outputs"]) for r in results])
    assert np.abs(local - expected).max() > 0.5
    assert np.array(results[0].result["False"]["mean"]) == pytest.approx(x[:4].mean(axis=(0, 1, 2)), abs=1e-12)
    assert np.array(results[1].result["False"]["variance"]) == pytest.approx(x[4:].var(axis=(0, 1, 2)), abs=1e-12)


def test_synchronized_bn_adds_collectives_and_time(cluster_run):
    _, results, _ = cluster_run
    counts = {sync: results[0].result[sync] for sync in ("True", "False")}
    assert counts["True"]["bn_collectives"] == {"CollectiveReduceV2": 3}   # sums, sums of squares, counts
    assert counts["False"]["bn_collectives"] == {}
    # one packed all-reduce of the gradients; synchronized BN adds 3 forward and 2 backward per layer
    assert counts["False"]["train_collectives"] == {"CollectiveReduceV2": 1}
    assert counts["True"]["train_collectives"] == {"CollectiveReduceV2": 1 + 3 + 2}
    ratio = [r.result["True"]["seconds"] / r.result["False"]["seconds"] for r in results]
    seconds = [1e3 * results[0].result[sync]["seconds"] for sync in ("True", "False")]
    print(f"fastest of 20 training steps, synchronized / per-worker BN: {ratio[0]:.2f}x, {ratio[1]:.2f}x "
          f"({seconds[0]:.1f} ms vs {seconds[1]:.1f} ms on worker 0)")
    assert all(r > 0 for r in ratio)
