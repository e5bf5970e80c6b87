"""How fast batch normalization runs: training-mode BN variants timed against a plain copy.

BN does a few arithmetic operations per element, so on large tensors its speed is set by
memory traffic. Throughput is reported as **GB/s of tensor data moved**, counting the
tensors each call reads and writes at its interface (``S`` = bytes of ``x``)::

    forward            read x, write y                          2 S
    forward+backward   read x, write y; read x and dy, write dx  5 S
    copy  (y = s * x)  read x, write y                          2 S

The copy is the machine's memory bandwidth as TensorFlow sees it, measured in the same
run; a memory-bound op cannot beat it. A two-pass BN forward (statistics, then normalize)
reads ``x`` twice, so even a perfect one reaches about 2/3 of the copy's GB/s by this count.

Variants (all channels-last, statistics over every axis but the last, training mode):

- ``keras``: ``keras.layers.BatchNormalization`` (Keras 3: ``tf.nn.moments`` +
  ``tf.nn.batch_normalization``; Keras 3 has no fused path);
- ``tf_keras_fused``: tf-keras's ``BatchNormalization(fused=True)``, the ``FusedBatchNormV3``
  kernel (only if the ``tf_keras`` package is installed);
- ``tf_nn``: :func:`bnhelpers.moments.moments_batch_norm` (``tf.nn.moments`` + ``tf.nn.batch_normalization``);
- ``bnhelpers``: :class:`bnhelpers.layers.MomentsBatchNorm`.

Each runs in a ``tf.function``, with and without ``jit_compile=True`` (XLA), in float32 and
(where the device supports it) float16, on whatever device TensorFlow places ops on.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from .layers import MomentsBatchNorm
from .moments import moments_batch_norm

__all__ = ["BYTES_PER_ELEMENT_MOVED", "Timing", "device_description", "variant_names", "time_call",
           "benchmark", "copy_bandwidth", "format_table", "ratio",
           "best_share", "summary_lines", "as_records"]

# Tensors of x's size read + written per call.
BYTES_PER_ELEMENT_MOVED = {"forward": 2, "forward+backward": 5, "copy": 2}
MODES = ("forward", "forward+backward")


@dataclass(frozen=True)
class Timing:
    """One measurement. ``seconds`` per call (best of the repeats), ``gb_per_s`` of data moved, ``error``:
    largest difference of ``y`` (and, with backward, ``dx``) from the float32 ``tf_nn`` variant
    in graph mode; ``status``: ``"ok"`` or why it did not run (then the numbers are NaN)."""

    variant: str
    jit: bool
    mode: str
    dtype: str
    shape: tuple[int, ...]
    seconds: float
    gb_per_s: float
    error: float
    status: str = "ok"


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


def _tf_keras():
    try:
        import tf_keras
    except ImportError:
        return None
    return tf_keras


def variant_names() -> list[str]:
    """The variants available in this environment, in table order."""
    names = ["keras", "tf_keras_fused", "tf_nn", "bnhelpers"]
    return [n for n in names if n != "tf_keras_fused" or _tf_keras() is not None]


def _forward(variant: str, channels: int, dtype) -> tuple[Callable, list]:
    """``(f, params)``: ``f(x) -> y`` in training mode and its trainable ``[gamma, beta]``."""
    if variant == "tf_nn":
        gamma = tf.Variable(tf.ones(channels, dtype))
        beta = tf.Variable(tf.zeros(channels, dtype))
        return (lambda x: moments_batch_norm(x, gamma, beta, axes=(0, 1, 2))[0]), [gamma, beta]
    if variant == "keras":
        layer = keras.layers.BatchNormalization(dtype=dtype.name)
    elif variant == "bnhelpers":
        layer = MomentsBatchNorm(dtype=dtype.name)
    elif variant == "tf_keras_fused":
        tf_keras = _tf_keras()
        if tf_keras is None:
            raise ValueError("tf_keras is not installed")
        layer = tf_keras.layers.BatchNormalization(fused=True, dtype=dtype.name)
    else:
        raise ValueError(f"unknown variant {variant!r}; choose from {variant_names()}")
    layer.build((None, None, None, channels))
    params = [layer.gamma, layer.beta]
    return (lambda x: layer(x, training=True)), params


def _sync(result) -> None:
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
        _sync(fn(*args))
    start = time.perf_counter()
    _sync(fn(*args))
    number = max(1, int(min_seconds / max(time.perf_counter() - start, 1e-9)))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            result = fn(*args)
        _sync(result)
        samples.append((time.perf_counter() - start) / number)
    return float(min(samples))


def _compiled(variant, mode, channels, dtype, jit):
    forward, params = _forward(variant, channels, dtype)
    if mode == "forward":
        return tf.function(lambda x, dy: forward(x), jit_compile=jit)

    def forward_backward(x, dy):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = forward(x)
        return [y, *tape.gradient(y, [x, *params], output_gradients=dy)]

    return tf.function(forward_backward, jit_compile=jit)


def _copy(dtype, jit):
    scale = tf.Variable(1.0, dtype=dtype)  # a variable, so that XLA cannot drop the multiply
    return tf.function(lambda x, dy: x * scale, jit_compile=jit)


def copy_bandwidth(results: Sequence[Timing]) -> dict:
    """``{(shape, dtype): GB/s}``: the faster of the graph and XLA copies in ``results``."""
    best = {}
    for t in results:
        if t.variant == "copy" and t.status == "ok":
            key = (t.shape, t.dtype)
            best[key] = max(best.get(key, 0.0), t.gb_per_s)
    return best


def benchmark(shapes: Sequence[Sequence[int]], *, variants: Sequence[str] | None = None,
              dtypes: Sequence[str] = ("float32",), modes: Sequence[str] = MODES,
              jit: Sequence[bool] = (False, True), repeats: int = 5, seed: int = 0) -> list[Timing]:
    """Time every combination on NHWC inputs of the given ``shapes``; returns a list of :class:`Timing`.

    For every shape and dtype the copy ``y = s * x`` is timed too (variant and mode ``"copy"``),
    right before the BN variants, so that both see the same machine load. A combination that
    fails to run (e.g. a dtype the device lacks) is kept with its status.
    """
    variants = list(variants or variant_names())
    unknown = set(variants) - set(variant_names())
    if unknown:
        raise ValueError(f"unknown or unavailable variants {sorted(unknown)}; choose from {variant_names()}")
    bad_modes = set(modes) - set(MODES)
    if bad_modes:
        raise ValueError(f"unknown modes {sorted(bad_modes)}; choose from {MODES}")
    rng = np.random.default_rng(seed)
    results = []
    for shape in shapes:
        shape = tuple(int(s) for s in shape)
        if len(shape) != 4 or min(shape) < 1:
            raise ValueError(f"shapes must be NHWC (4 positive sizes), got {shape}")
        x64 = rng.normal(1.0, 2.0, shape)
        dy64 = rng.normal(0.0, 1.0, shape)
        for dtype_name in dtypes:
            dtype = tf.as_dtype(dtype_name)
            x, dy = tf.constant(x64, dtype), tf.constant(dy64, dtype)
            reference = {mode: tf.nest.flatten(_compiled("tf_nn", mode, shape[-1], tf.float32, False)(
                tf.cast(x, tf.float32), tf.cast(dy, tf.float32))) for mode in modes}
            for mode in ("copy", *modes):
                moved = BYTES_PER_ELEMENT_MOVED[mode] * dtype.size * int(np.prod(shape))
                for variant in (["copy"] if mode == "copy" else variants):
                    for flag in jit:
                        try:
                            if mode == "copy":
                                fn, error = _copy(dtype, flag), 0.0
                                seconds = time_call(fn, [x, dy], repeats=repeats)
                            else:
                                fn = _compiled(variant, mode, shape[-1], dtype, flag)
                                seconds = time_call(fn, [x, dy], repeats=repeats)
                                pairs = zip(tf.nest.flatten(fn(x, dy))[:2], reference[mode][:2])
                                error = max(float(tf.reduce_max(tf.abs(tf.cast(a, tf.float32) - b)))
                                            for a, b in pairs)
                            results.append(Timing(variant, flag, mode, dtype_name, shape, seconds,
                                                  moved / seconds / 1e9, error))
                        except (tf.errors.OpError, TypeError, ValueError, NotImplementedError) as err:
                            status = f"unsupported: {type(err).__name__}: {str(err).splitlines()[0][:80]}"
                            results.append(Timing(variant, flag, mode, dtype_name, shape, float("nan"),
                                                  float("nan"), float("nan"), status))
    return results


def ratio(results: Sequence[Timing], numerator: str, denominator: str, **match) -> list[float]:
    """Time ratios ``numerator / denominator`` for every setting both ran in (filtered by ``match``,
    e.g. ``jit=False``). A ratio of 1.2 means ``numerator`` takes 20 % longer."""
    def key(t):
        return (t.jit, t.mode, t.dtype, t.shape)

    def keep(t):
        return t.status == "ok" and all(getattr(t, k) == v for k, v in match.items())

    base = {key(t): t.seconds for t in results if t.variant == denominator and keep(t)}
    return [t.seconds / base[key(t)] for t in results
            if t.variant == numerator and keep(t) and key(t) in base]


def format_table(results: Sequence[Timing]) -> str:
    """A plain-text table: one row per shape, dtype, mode and variant; ms and GB/s for graph
    and XLA, and the better of the two GB/s as a percentage of the copy's (:func:`copy_bandwidth`).
    """
    copy_gb_per_s = copy_bandwidth(results)
    rows = {}
    for t in results:
        rows.setdefault((t.shape, t.dtype, t.mode, t.variant), {})[t.jit] = t
    header = (f"{'shape (NHWC)':<18} {'dtype':<8} {'mode':<17} {'variant':<15} "
              f"{'graph ms':>9} {'GB/s':>7} {'XLA ms':>9} {'GB/s':>7} {'best/copy':>9}")
    lines = [header, "-" * len(header)]
    for (shape, dtype, mode, variant), by_jit in rows.items():
        cells = []
        for flag in (False, True):
            t = by_jit.get(flag)
            ok = t is not None and t.status == "ok"
            cells.append(f"{t.seconds * 1e3:9.3f} {t.gb_per_s:7.1f}" if ok else f"{'-':>9} {'-':>7}")
        speeds = [t.gb_per_s for t in by_jit.values() if t.status == "ok"]
        copy = copy_gb_per_s.get((shape, dtype))
        share = f"{100 * max(speeds) / copy:8.0f}%" if speeds and copy else f"{'-':>9}"
        lines.append(f"{'x'.join(map(str, shape)):<18} {dtype:<8} {mode:<17} {variant:<15} "
                     f"{cells[0]} {cells[1]} {share}")
    return "\n".join(lines)


def best_share(results: Sequence[Timing], shape=None, dtype: str = "float32") -> dict:
    """``{mode: (variant, jit, fraction of copy GB/s)}`` of the fastest BN variant per mode,
    on ``shape`` (default: the largest timed) and ``dtype``."""
    ok = [t for t in results if t.status == "ok" and t.dtype == dtype and t.variant != "copy"]
    if not ok:
        return {}
    shape = tuple(shape) if shape is not None else max({t.shape for t in ok}, key=lambda s: np.prod(s))
    copy = copy_bandwidth(results).get((shape, dtype))
    best = {}
    for t in ok:
        if t.shape == shape and copy and (t.mode not in best or t.gb_per_s / copy > best[t.mode][2]):
            best[t.mode] = (t.variant, t.jit, t.gb_per_s / copy)
    return best


def summary_lines(results: Sequence[Timing]) -> list[str]:
    """The headline numbers: bnhelpers / keras time ratios and the best share of copy bandwidth."""
    lines = []
    for mode in MODES:
        for flag in (False, True):
            ratios = ratio(results, "bnhelpers", "keras", mode=mode, jit=flag)
            if ratios:
                lines.append(f"bnhelpers / keras time, {mode:<16} {'XLA' if flag else 'graph':<5}: "
                             f"median {np.median(ratios):.2f}, worst {max(ratios):.2f} over {len(ratios)} settings")
    for dtype in sorted({t.dtype for t in results}):
        for mode, (variant, flag, share) in best_share(results, dtype=dtype).items():
            lines.append(f"largest input, {dtype}, {mode:<16}: best is {variant} ({'XLA' if flag else 'graph'}) "
                         f"at {100 * share:.0f}% of copy bandwidth")
    return lines


def as_records(results: Sequence[Timing]) -> list[dict]:
    """The results as plain dicts (e.g. for ``json.dump``)."""
    return [asdict(t) for t in results]
