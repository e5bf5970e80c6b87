"""bnhelpers.environment: setup() (quiet, seeded, deterministic; threads and logical CPUs) and run_python,
the one way the tests and the package run code in a fresh Python process."""

import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from bnhelpers import setup
from bnhelpers.environment import run_python


def test_same_seed_same_numbers():
    rng = setup(3)
    a = (rng.random(), np.random.rand(), float(tf.random.uniform(())))
    rng = setup(3)
    b = (rng.random(), np.random.rand(), float(tf.random.uniform(())))
    assert a == b


def test_bad_seed():
    with pytest.raises(ValueError, match="seed must be a non-negative int, got -1"):
        setup(-1)


def test_switching_keras_after_import_is_refused():
    with pytest.raises(RuntimeError, match="TensorFlow is already imported with the other Keras; restart the kernel"):
        setup(0, legacy_keras=True)


# The child starts without the TF_* and KERAS* variables this process set, as a fresh shell would:
# run_python can only add variables, so the child removes them before anything reads them.
CLEAN_START = ("import os\n"
               "for key in [k for k in os.environ if k.startswith(('TF_', 'KERAS'))]:\n"
               "    del os.environ[key]\n")


@pytest.mark.parametrize("legacy", [False, True])
def test_import_writes_nothing_to_stderr_and_sets_the_thread_count(legacy):
    # one fresh process checks both: the first import is silent, and `threads` takes effect on it
    code = CLEAN_START + (f"from bnhelpers import setup; setup(0, legacy_keras={legacy}, threads=2); "
                          "import tensorflow as tf; "
                          "print(tf.reduce_sum(tf.ones(3)).numpy(), tf.config.threading.get_intra_op_parallelism_threads())")
    done = run_python(code, timeout=120, what="the import probe")
    assert done.stdout.split() == ["3.0", "2"]
    assert done.stderr == ""


def test_kernels_that_depend_on_the_cpu_are_off():
    # conftest.py called setup(0) before TensorFlow was first imported
    assert os.environ["TENSORFLOW_USE_CUSTOM_CONTRACTION_KERNEL"] == "0"
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert tf.config.threading.get_intra_op_parallelism_threads() == 1


@pytest.mark.parametrize("name", ["threads", "logical_cpus"])
@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True])
def test_bad_thread_or_logical_cpu_count(name, bad):
    with pytest.raises(ValueError, match=f"{name} must be a positive int or None, got {bad!r}"):
        setup(0, **{name: bad})


def test_logical_cpus_cannot_change_after_the_runtime_started():
    setup(0, logical_cpus=1)           # the split this process already has: nothing to do
    assert len(tf.config.list_logical_devices("CPU")) == 1
    with pytest.raises(RuntimeError, match=r"restart the kernel and call setup\(\.\.\., logical_cpus=2\)"):
        setup(0, logical_cpus=2)


def test_run_python_returns_the_finished_process_with_its_output():
    done = run_python("import sys; print(sys.argv[1:]); print('note', file=sys.stderr)", "a", "b c")
    assert done.returncode == 0
    assert done.stdout == "['a', 'b c']\n" and done.stderr == "note\n"


def test_run_python_passes_env_and_drops_the_keras_choice():
    code = "import os; print(os.environ.get('BN_TEST_VALUE'), os.environ.get('TF_USE_LEGACY_KERAS'))"
    assert os.environ["TF_USE_LEGACY_KERAS"] == "0"    # set by setup() in this process
    assert run_python(code).stdout.split() == ["None", "None"]
    assert run_python(code, env={"BN_TEST_VALUE": "x", "TF_USE_LEGACY_KERAS": "1"}).stdout.split() == ["x", "1"]


def test_run_python_failure_names_what_and_the_childs_stderr():
    code = "import sys; sys.stderr.write('x' * 5000 + 'boom from the child'); sys.exit(3)"
    with pytest.raises(RuntimeError, match=r"^the probe failed \(exit 3\): x+boom from the child$") as caught:
        run_python(code, what="the probe")
    assert len(str(caught.value)) < 2100                # only the end of a long stderr
    with pytest.raises(RuntimeError, match=r"(?s)the child process failed \(exit 1\): Traceback.*ZeroDivisionError: division by zero"):
        run_python("1 / 0")


def test_run_python_timeout():
    with pytest.raises(subprocess.TimeoutExpired, match="timed out after 0.5 seconds"):
        run_python("import time; time.sleep(30)", timeout=0.5)


def test_silenced_stderr_hides_file_descriptor_2_and_restores_it():
    code = ("import os; from bnhelpers.environment import silenced_stderr\n"
            "with silenced_stderr():\n    os.write(2, b'hidden')\nos.write(2, b'shown')")
    assert run_python(code).stderr == "shown"
