"""setup(): quiet, seeded and deterministic."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bnhelpers import setup


def test_same_seed_same_numbers():
    rng = setup(3)
    a = (rng.random(), np.random.rand(), float(tf.random.uniform(())))
    rng = setup(3)
    b = (rng.random(), np.random.rand(), float(tf.random.uniform(())))
    assert a == b


def test_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        setup(-1)


def test_switching_keras_after_import_is_refused():
    with pytest.raises(RuntimeError, match="restart the kernel"):
        setup(0, legacy_keras=True)


@pytest.mark.parametrize("legacy", [False, True])
def test_import_writes_nothing_to_stderr(legacy):
    code = f"from bnhelpers import setup; setup(0, legacy_keras={legacy}); import tensorflow as tf; print(tf.reduce_sum(tf.ones(3)).numpy())"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "KERAS"))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3.0"
    assert done.stderr == ""


def test_kernels_that_depend_on_the_cpu_are_off():
    # conftest.py called setup(0) before TensorFlow was first imported
    assert os.environ["TENSORFLOW_USE_CUSTOM_CONTRACTION_KERNEL"] == "0"
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert tf.config.threading.get_intra_op_parallelism_threads() == 1


@pytest.mark.parametrize("threads", [0, -2, 1.5, "2"])
def test_bad_thread_count(threads):
    with pytest.raises(ValueError, match="threads"):
        setup(0, threads=threads)


def test_thread_count_is_set_on_first_import():
    code = ("from bnhelpers import setup; setup(0, threads=2); import tensorflow as tf; "
            "print(tf.config.threading.get_intra_op_parallelism_threads())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"
