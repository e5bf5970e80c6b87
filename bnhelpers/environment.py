"""``setup(seed)``: the first call of every notebook.

It must run before anything imports TensorFlow: it sets the environment
variables TensorFlow reads at import time, imports TensorFlow with file
descriptor 2 pointed at ``/dev/null`` (TensorFlow's C++ start-up notices ignore
``TF_CPP_MIN_LOG_LEVEL`` and would otherwise end up in a notebook's stored
stderr), runs TensorFlow's CPU kernels on one thread with Eigen's own matrix
multiply, seeds Python, NumPy and TensorFlow, turns on op determinism and sets
the plot defaults used throughout the book. Python's string hashing is not seeded:
it is fixed when the interpreter starts, before ``setup`` can run, and nothing in
the book depends on it.

Round-off and the CPU: a matrix multiply sums its terms in an order that depends
on the machine. oneDNN's ``sgemm`` (which TensorFlow's Eigen contraction calls
unless ``TENSORFLOW_USE_CUSTOM_CONTRACTION_KERNEL=0``, whatever
``TF_ENABLE_ONEDNN_OPTS`` says) picks AVX2 or AVX-512 code at run time, and the
split of work between threads depends on the thread count. ``setup`` removes
those two sources. A third remains: Eigen sizes its blocks from the cache sizes
the CPU reports, so results can still differ in the last bits from machine to
machine, and training amplifies such differences. The book therefore prints only
what holds on every CPU (see the README, "Writing a chapter");
``make portability`` checks it.

Chapters: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import warnings

import numpy as np

__all__ = ["setup", "silenced_stderr", "run_python"]

THIRD_PARTY_NOISE = r"(tensorflow|tf_keras|keras|google\.protobuf|absl|h5py|flatbuffers)(\.|$)"

PLOT_DEFAULTS = {
    "figure.figsize": (6.4, 4.0),
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "font.size": 11,
}


@contextlib.contextmanager
def silenced_stderr():
    """Point file descriptor 2 (what C++ code writes to) at /dev/null, then restore it."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _split_cpu(tf, n: int) -> None:
    """Make ``n`` logical devices of the first CPU, unless TensorFlow already has exactly that."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if (1 if current is None else len(current)) == n:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    except RuntimeError as err:  # "Virtual devices cannot be modified after being initialized"
        raise RuntimeError(
            f"TensorFlow's runtime has already started with {1 if current is None else len(current)} CPU "
            f"device(s); restart the kernel and call setup(..., logical_cpus={n}) before anything else "
            "uses TensorFlow") from err


def setup(seed: int = 0, *, legacy_keras: bool = False, threads: int | None = 1,
          logical_cpus: int | None = None) -> np.random.Generator:
    """Prepare a quiet, seeded, deterministic TensorFlow session; return a NumPy Generator.

    ``legacy_keras=True`` selects tf-keras (Keras 2) for ``tf.compat.v1.layers``;
    it must be decided before TensorFlow is first imported in the process.
    ``threads`` is the number of threads one TensorFlow op may use (intra-op
    parallelism): 1, the default, makes results independent of the number of
    cores; ``None`` keeps TensorFlow's default (one per core). Like
    ``legacy_keras`` it takes effect only when ``setup`` first imports TensorFlow.
    ``logical_cpus=n`` splits the first physical CPU into ``n`` logical devices, so
    that ``tf.distribute`` strategies have ``n`` replicas on a machine without GPUs
    (chapter 8). TensorFlow fixes its devices when its runtime starts, so this too
    must come with the first ``setup`` of a process; asking later for a different
    split raises ``RuntimeError`` (restart the kernel). ``None`` leaves the devices as they are.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    for name, value in (("threads", threads), ("logical_cpus", logical_cpus)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    first_import = "tensorflow" not in sys.modules
    wanted_legacy = "1" if legacy_keras else "0"
    if "tensorflow" in sys.modules:
        if os.environ.get("TF_USE_LEGACY_KERAS", "0") != wanted_legacy:
            raise RuntimeError(
                "TensorFlow is already imported with the other Keras; restart the "
                "kernel and call setup() before importing TensorFlow"
            )
    else:
        os.environ["TF_USE_LEGACY_KERAS"] = wanted_legacy
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    # Fewer CPU-dependent kernels (see the module docstring). Neither setting makes
    # float32 training bit-identical across CPUs: Eigen's cache-size blocking remains.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("TENSORFLOW_USE_CUSTOM_CONTRACTION_KERNEL", "0")

    with silenced_stderr():
        import tensorflow as tf

        if first_import and threads is not None:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        if logical_cpus is not None:
            _split_cpu(tf, int(logical_cpus))
        tf.constant(1.0) + 1.0  # the first op initializes the runtime, which logs too
        if legacy_keras:
            import tf_keras as keras  # noqa: F401
        else:
            import keras
    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    # Deprecation notices that TensorFlow's and Keras's own modules raise about their internals: a reader cannot act
    # on them. A deprecated call in a notebook is attributed to the notebook and still shows.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=THIRD_PARTY_NOISE)

    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()

    import matplotlib as mpl

    mpl.rcParams.update(PLOT_DEFAULTS)
    return np.random.default_rng(int(seed))


def run_python(code: str, *args: str, timeout: float = 300.0, env: dict | None = None,
               what: str = "the child process") -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (``sys.executable -c code *args``); return the finished process.

    For what one process cannot do twice: choose the other Keras (``setup(legacy_keras=True)``
    must precede TensorFlow's import), start TensorFlow with other settings. The child
    inherits this environment without ``TF_USE_LEGACY_KERAS``, so its own ``setup`` decides,
    updated with ``env``. ``stdout`` and ``stderr`` are captured as text. Raises
    ``RuntimeError`` with the end of the child's stderr, naming ``what``, if it exits non-zero.
    """
    child_env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    child_env.update(env or {})
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, env=child_env)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return done
