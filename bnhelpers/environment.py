"""``setup(seed)``: the first call of every notebook.

It must run before anything imports TensorFlow: it sets the environment
variables TensorFlow reads at import time, imports TensorFlow with file
descriptor 2 pointed at ``/dev/null`` (TensorFlow's C++ start-up notices ignore
``TF_CPP_MIN_LOG_LEVEL`` and would otherwise end up in a notebook's stored
stderr), runs TensorFlow's CPU kernels on one thread with Eigen's own matrix
multiply, seeds Python, NumPy and TensorFlow, turns on op determinism and sets
the plot defaults used throughout the book.

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
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings

import numpy as np

__all__ = ["setup", "silenced_stderr"]

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


def setup(seed: int = 0, *, legacy_keras: bool = False, threads: int | None = 1) -> np.random.Generator:
    """Prepare a quiet, seeded, deterministic TensorFlow session; return a NumPy Generator.

    ``legacy_keras=True`` selects tf-keras (Keras 2) for ``tf.compat.v1.layers``;
    it must be decided before TensorFlow is first imported in the process.
    ``threads`` is the number of threads one TensorFlow op may use (intra-op
    parallelism): 1, the default, makes results independent of the number of
    cores; ``None`` keeps TensorFlow's default (one per core). Like
    ``legacy_keras`` it takes effect only when ``setup`` first imports TensorFlow.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if threads is not None and (not isinstance(threads, (int, np.integer)) or threads < 1):
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")
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
    os.environ.setdefault("PYTHONHASHSEED", str(seed))

    with silenced_stderr():
        import tensorflow as tf

        if first_import and threads is not None:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.constant(1.0) + 1.0  # the first op initializes the runtime, which logs too
        if legacy_keras:
            import tf_keras as keras  # noqa: F401
        else:
            import keras
    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()

    import matplotlib as mpl

    mpl.rcParams.update(PLOT_DEFAULTS)
    return np.random.default_rng(int(seed))
