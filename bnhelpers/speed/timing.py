"""Timing on whatever device TensorFlow computes on, and a description of that device.

:func:`time_call` warms up (tracing, compiling), then takes the best of several
measurements, each long enough to swamp the timer's resolution; :func:`sync` waits for
asynchronous GPU kernels. :mod:`bnhelpers.speed.bn_speed` times with it.

Chapters: 8.
"""

from __future__ import annotations

import os
import platform
import time
from typing import Callable, Sequence

import tensorflow as tf

__all__ = ["device_description", "sync", "time_call"]


def device_description() -> str:
    """The device TensorFlow computes on by default, in words."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU: {details.get('device_name', gpus[0].name)} ({len(gpus)} visible)"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU: {model} ({os.cpu_count()} logical cores)"


def sync(result) -> None:
    """Block until ``result`` is computed (GPU kernels run asynchronously)."""
    first = tf.nest.flatten(result)[0]
    first[(0,) * len(first.shape)].numpy()


def time_call(fn: Callable, args: Sequence, *, repeats: int = 5, min_seconds: float = 0.05) -> float:
    """Seconds per call of ``fn(*args)``: the best of ``repeats`` measurements, after two
    warm-up calls (tracing, compiling). Each measurement runs enough calls to last about
    ``min_seconds``. The best, not the mean, because other processes only ever slow a call down.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(2):
        sync(fn(*args))
    start = time.perf_counter()
    sync(fn(*args))
    number = max(1, int(min_seconds / max(time.perf_counter() - start, 1e-9)))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            result = fn(*args)
        sync(result)
        samples.append((time.perf_counter() - start) / number)
    return float(min(samples))
