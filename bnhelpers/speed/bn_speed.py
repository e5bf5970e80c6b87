"""How fast batch normalization runs: training-mode BN variants timed against a copy.

BN does a few arithmetic operations per element, so on large tensors its speed is set by
memory traffic. Throughput is reported as **GB/s of tensor data moved**, counting the
tensors each call reads and writes at its interface (``S`` = bytes of ``x``)::

    forward            read x, write y                          2 S
    forward+backward   read x, write y; read x and dy, write dx  5 S
    statistics         read x (mean and variance are tiny)      1 S
    copy               read x, write y                          2 S

The copy is the machine's memory bandwidth as TensorFlow sees it, measured in the same run:
three implementations that really read and write every byte (``copy``: ``x * s``;
``copy_add``: ``x + s``, ``s`` a variable so that XLA cannot fold it away; ``copy_memcpy``:
``tf.raw_ops.DeepCopy``, a memcpy, graph mode only: XLA has no kernel for it), and the reference is the fastest of them
(:func:`bnhelpers.speed.report.copy_bandwidth`). ``tf.identity`` or a cast to the same dtype
would not do: they hand back the same buffer. A memory-bound op cannot beat the copy; a two-pass
BN forward (statistics, then normalize) reads ``x`` twice, so even a perfect one reaches about
2/3 of the copy's GB/s by this count.

Inputs are NHWC. :func:`default_shapes` sizes them from the machine: ``small`` fits in the
last-level cache (LLC), ``large`` is at least 4x the LLC in the dtype timed, so that the
timing measures memory, not cache.

Variants (channels-last, statistics over N, H, W, training mode), mode forward and forward+backward:

- ``keras``: ``keras.layers.BatchNormalization`` (Keras 3: ``tf.nn.moments`` +
  ``tf.nn.batch_normalization``; Keras 3 has no fused path);
- ``tf_keras_fused``: tf-keras's ``BatchNormalization(fused=True)``, the ``FusedBatchNormV3``
  kernel (only if the ``tf_keras`` package is installed);
- ``tf_nn``: :func:`bnhelpers.core.moments.moments_batch_norm` (``tf.nn.moments`` + ``tf.nn.batch_normalization``);
- ``bnhelpers``: :class:`bnhelpers.layers.batch_norm.MomentsBatchNorm`;
- ``fused``: :class:`bnhelpers.layers.fused.FusedBatchNormalization` (``FusedBatchNormV3`` in a
  Keras 3 layer), status ``"unavailable: ..."`` where it cannot be imported.

and, mode ``statistics``, the teaching pair :func:`two_pass_moments` and :func:`one_pass_moments`
(see their numerics note and :func:`one_pass_error`).

Each runs in a ``tf.function``, with and without ``jit_compile=True`` (XLA), in float32 and
float16, on whatever device TensorFlow places ops on. :func:`xla_parts` times the pieces of BN
(mean, variance, normalization, all three) in graph mode and XLA, and :func:`hlo_passes` reads XLA's
optimized program: its kernels, how many read ``x``, and the bytes they move in units of ``S``.
:mod:`bnhelpers.speed.timing` times the calls; :mod:`bnhelpers.speed.report` reads the results.

Why XLA is slower here (measured on a 2-core AMD EPYC, 32 MiB L3, TensorFlow 2.21): XLA compiles every
variant into the same program, the ``fused`` layer included (``FusedBatchNormV3`` is decomposed into
ordinary reductions), and on inputs out of the cache (48x56x56x64 and 88x56x56x128 float32) that program
writes the variance's squared deviations ``(x - mean)**2`` to memory and reads them back:
:func:`hlo_passes` counts 8 kernels moving 6 S for the forward pass (4 S read, 2 S written, against
the call's 2 S) and 14 kernels moving 14 S for forward+backward (against 5 S); on 8x28x28x128 XLA fuses
the reductions and the forward program moves 4 S. Timed alone on 88x56x56x128 in one run, the variance
reduction took 83 ms under XLA and 60 ms in graph mode, while the mean (17 vs 32 ms) and the
normalization (16 vs 32 ms) ran faster under XLA. So under XLA the fused layer loses its single kernel
and runs at the speed of Keras's layer (forward+backward 34 ms, against 10 ms in graph mode, on
48x56x56x64), whereas Keras's layer, which never had that kernel, was faster under XLA in these runs
(34 vs 50 ms). ``make bench`` prints these measurements for the machine it runs on.

Chapters: 8.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from ..core.moments import moments_batch_norm
from ..core.validation import check_positive_int
from ..layers.batch_norm import MomentsBatchNorm
from .timing import time_call, time_samples

__all__ = ["BYTES_PER_ELEMENT_MOVED", "COPIES", "MODES", "PARTS", "STATISTICS", "Timing", "benchmark",
           "compiled_variant", "default_shapes", "float16_profile", "folding_speedup", "hlo_passes", "one_pass_error",
           "one_pass_moments", "two_pass_moments", "variant_names", "xla_parts"]

# Tensors of x's size read + written per call.
BYTES_PER_ELEMENT_MOVED = {"forward": 2, "forward+backward": 5, "statistics": 1, "copy": 2,
                           "mean": 1, "variance": 1, "normalize": 2, "moments+normalize": 2}
MODES = ("forward", "forward+backward", "statistics")
COPIES = ("copy", "copy_add", "copy_memcpy")
LAYERS = ("keras", "tf_keras_fused", "tf_nn", "bnhelpers", "fused")
STATISTICS = ("two_pass", "one_pass")
PARTS = ("mean", "variance", "normalize", "moments+normalize")
NAN = float("nan")


@dataclass(frozen=True)
class Timing:
    """One measurement. ``seconds`` per call (the median of ``repeats``), ``seconds_min``/``seconds_max``
    their spread, ``gb_per_s`` of data moved at the median; ``error``: largest difference of ``y`` (and,
    with backward, ``dx``; for ``statistics`` the mean and variance) from a float32 reference (the
    ``tf_nn`` variant in graph mode; NumPy float64 for statistics); ``status``: ``"ok"`` or why it did
    not run (then the numbers are NaN)."""

    variant: str
    jit: bool
    mode: str
    dtype: str
    shape: tuple[int, ...]
    seconds: float
    gb_per_s: float
    error: float
    status: str = "ok"
    seconds_min: float = NAN
    seconds_max: float = NAN
    repeats: int = 0


def _tf_keras():
    try:
        import tf_keras
    except ImportError:
        return None
    return tf_keras


def variant_names(mode: str = "forward") -> list[str]:
    """The variants of ``mode`` in table order: BN layers for ``forward`` and ``forward+backward``
    (``tf_keras_fused`` only if ``tf_keras`` is installed), the pair for ``statistics``, the copies for ``copy``."""
    if mode == "statistics":
        return list(STATISTICS)
    if mode == "copy":
        return list(COPIES)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {MODES + ('copy',)}")
    return [n for n in LAYERS if n != "tf_keras_fused" or _tf_keras() is not None]


def default_shapes(llc_bytes: int, dtype: str = "float32", channels: int = 128) -> dict:
    """``{"small": shape, "large": shape}``, NHWC with 56x56 pixels and ``channels``: ``small`` has
    8 images and ``large`` the fewest images, a multiple of 8, that make it at least
    4 x ``llc_bytes`` in ``dtype`` (e.g. 88 images, 141 MB, for a 32 MiB L3 in float32)."""
    check_positive_int(llc_bytes=llc_bytes, channels=channels)
    image = 56 * 56 * channels * tf.as_dtype(dtype).size
    batch = 8 * math.ceil(4 * llc_bytes / image / 8)
    return {"small": (8, 28, 28, channels), "large": (batch, 56, 56, channels)}


def two_pass_moments(x, axes=(0, 1, 2)):
    """``(mean, variance)`` in two passes over ``x``: the mean, then the mean of squared deviations.

    Numerically safe: the deviations ``x - mean`` are small when ``x`` is, so the variance keeps
    its relative precision however large ``|mean|`` is compared with the standard deviation.
    """
    mean = tf.reduce_mean(x, axis=axes, keepdims=True)
    variance = tf.reduce_mean(tf.square(x - mean), axis=axes)
    return tf.squeeze(mean, axis=axes), variance


def one_pass_moments(x, axes=(0, 1, 2)):
    """``(mean, variance)`` from one reduction of ``[x, x**2]``: ``var = E[x^2] - E[x]^2``.

    Cost: one reduction over ``x`` instead of two, but ``tf.stack`` builds ``[x, x**2]`` in memory in graph
    mode, and XLA does too on inputs larger than the cache (see :func:`hlo_passes`), so it is not faster
    in TensorFlow; a hand-written kernel would read ``x`` once.

    Numerics note: fewer passes, but the subtraction cancels catastrophically
    when ``|mean| >> std``: both terms are about ``mean**2`` and carry a rounding error of about
    ``eps * mean**2`` (``eps`` = 1.2e-7 in float32), which is the absolute error of the variance.
    With mean 1000 and std 1 in float32 that is an error of order 0.1 (or worse: the variance can
    come out negative) on a true variance of 1; :func:`one_pass_error` measures it, and the tests
    check it. Fused kernels that read once use Welford's update or a shifted sum instead.
    """
    stacked = tf.stack([x, tf.square(x)])
    sums = tf.reduce_mean(stacked, axis=[a + 1 for a in axes])
    return sums[0], sums[1] - tf.square(sums[0])


def one_pass_error(n: int = 1_000_000, mean: float = 1000.0, std: float = 1.0, seed: int = 0) -> dict:
    """Largest relative error of the variance of ``n`` normal values (``mean``, ``std``), computed in
    float32 by :func:`one_pass_moments` and :func:`two_pass_moments`, against NumPy float64 on the same
    float32 values: ``{"one_pass": err, "two_pass": err, "variance": reference}``. Shape ``(n, 1, 1, 1)``."""
    check_positive_int(n=n)
    if not (std > 0 and math.isfinite(mean) and math.isfinite(std)):
        raise ValueError(f"need a finite mean and std > 0, got mean={mean}, std={std}")
    x32 = np.random.default_rng(seed).normal(mean, std, (n, 1, 1, 1)).astype(np.float32)
    reference = float(np.var(x32.astype(np.float64)))
    x = tf.constant(x32)
    return {"one_pass": abs(float(one_pass_moments(x)[1][0]) - reference) / reference,
            "two_pass": abs(float(two_pass_moments(x)[1][0]) - reference) / reference,
            "variance": reference}


def _fused_layer():
    from ..layers.fused import FusedBatchNormalization   # lazily: the benchmark runs without it

    return FusedBatchNormalization


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
    elif variant == "fused":
        layer = _fused_layer()(dtype=dtype.name)
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


def compiled_variant(variant: str, mode: str, channels: int, dtype, jit: bool) -> Callable:
    """``f(x, dy)`` in a ``tf.function`` (XLA if ``jit``) for one ``variant`` of ``mode``: the copy, the
    statistics ``(mean, variance)``, BN's ``y``, or ``[y, dx, dgamma, dbeta]`` for forward+backward.
    ``dtype`` a ``tf.DType``; BN layers get ``channels`` channels, freshly built."""
    if mode == "statistics":
        moments = {"two_pass": two_pass_moments, "one_pass": one_pass_moments}[variant]
        return tf.function(lambda x, dy: moments(x), jit_compile=jit)
    if mode == "copy":
        if variant == "copy_memcpy":
            return tf.function(lambda x, dy: tf.raw_ops.DeepCopy(x=x), jit_compile=jit)
        # variables, so that XLA cannot drop the multiply or the add
        s = tf.Variable(1.0 if variant == "copy" else 0.0, dtype=dtype)
        if variant == "copy":
            return tf.function(lambda x, dy: x * s, jit_compile=jit)
        return tf.function(lambda x, dy: x + s, jit_compile=jit)
    forward, params = _forward(variant, channels, dtype)
    if mode == "forward":
        return tf.function(lambda x, dy: forward(x), jit_compile=jit)

    def forward_backward(x, dy):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = forward(x)
        return [y, *tape.gradient(y, [x, *params], output_gradients=dy)]

    return tf.function(forward_backward, jit_compile=jit)


def _max_error(outputs, reference) -> float:
    return max(float(tf.reduce_max(tf.abs(tf.cast(a, tf.float64) - tf.cast(b, tf.float64))))
               for a, b in zip(outputs, reference))


def _status(err: Exception, prefix: str = "unsupported") -> str:
    return f"{prefix}: {type(err).__name__}: {(str(err).splitlines() or [''])[0][:80]}"


def _timing(variant, jit, mode, dtype_name, shape, samples, error, moved) -> Timing:
    return Timing(variant, jit, mode, dtype_name, shape, samples.median, moved / samples.median / 1e9, error,
                  "ok", samples.min, samples.max, samples.repeats)


def _check_shape(shape) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"shapes must be NHWC (4 positive sizes), got {shape}")
    return shape


def benchmark(shapes: Sequence[Sequence[int]], *, variants: Sequence[str] | None = None,
              dtypes: Sequence[str] = ("float32",), modes: Sequence[str] = MODES,
              jit: Sequence[bool] = (False, True), repeats: int = 7, min_seconds: float = 0.05,
              seed: int = 0) -> list[Timing]:
    """Time every combination on NHWC inputs of the given ``shapes``; returns a list of :class:`Timing`.

    For every shape and dtype the copies (:data:`COPIES`, mode ``"copy"``) are timed first, so that
    they and the BN variants see the same machine load. ``variants`` (default: all of every mode)
    may name BN layers and the statistics pair. A combination that fails to run (e.g. a dtype the
    device lacks, XLA without the op) is kept with its status; ``fused`` without its module has status
    ``"unavailable: ..."``. Timing: :func:`bnhelpers.speed.timing.time_samples` (median of ``repeats``).
    """
    known = set(LAYERS) | set(STATISTICS)
    variants = list(variants) if variants is not None else [*variant_names(), *STATISTICS]
    unknown = set(variants) - (set(variant_names()) | set(STATISTICS))
    if unknown:
        raise ValueError(f"unknown or unavailable variants {sorted(unknown)}; choose from {sorted(known)}")
    bad_modes = set(modes) - set(MODES)
    if bad_modes:
        raise ValueError(f"unknown modes {sorted(bad_modes)}; choose from {MODES}")
    check_positive_int(repeats=repeats)
    shapes = [_check_shape(s) for s in shapes]
    rng = np.random.default_rng(seed)
    results = []
    for shape in shapes:
        x64 = rng.normal(1.0, 2.0, shape)
        dy64 = rng.normal(0.0, 1.0, shape)
        for dtype_name in dtypes:
            dtype = tf.as_dtype(dtype_name)
            x, dy = tf.constant(x64, dtype), tf.constant(dy64, dtype)
            x32, dy32 = tf.cast(x, tf.float32), tf.cast(dy, tf.float32)
            reference = {mode: tf.nest.flatten(compiled_variant("tf_nn", mode, shape[-1], tf.float32, False)(
                x32, dy32))[:2] for mode in modes if mode != "statistics"}
            if "statistics" in modes:
                xd = x32.numpy().astype(np.float64)
                reference["statistics"] = [xd.mean(axis=(0, 1, 2)), xd.var(axis=(0, 1, 2))]
            for mode in ("copy", *modes):
                moved = BYTES_PER_ELEMENT_MOVED[mode] * dtype.size * int(np.prod(shape))
                chosen = COPIES if mode == "copy" else [v for v in variant_names(mode) if v in variants]
                for variant in chosen:
                    if variant == "fused":
                        try:
                            _fused_layer()
                        except ImportError as err:
                            status = _status(err, "unavailable")
                            results += [Timing(variant, flag, mode, dtype_name, shape, NAN, NAN, NAN, status)
                                        for flag in jit]
                            continue
                    for flag in jit:
                        if variant == "copy_memcpy" and flag:
                            continue   # DeepCopy has no XLA kernel
                        try:
                            fn = compiled_variant(variant, mode, shape[-1], dtype, flag)
                            samples = time_samples(fn, [x, dy], repeats=repeats, min_seconds=min_seconds)
                            error = 0.0 if mode == "copy" else _max_error(tf.nest.flatten(fn(x, dy))[:2],
                                                                           reference[mode])
                            results.append(_timing(variant, flag, mode, dtype_name, shape, samples, error, moved))
                        except (tf.errors.OpError, TypeError, ValueError, NotImplementedError) as err:
                            results.append(Timing(variant, flag, mode, dtype_name, shape, NAN, NAN, NAN, _status(err)))
    return results


def _parts(part: str):
    axes = [0, 1, 2]
    if part == "mean":
        return lambda x, m, r: tf.reduce_mean(x, axis=axes)
    if part == "variance":
        return lambda x, m, r: tf.reduce_mean(tf.square(x - m), axis=axes)
    if part == "normalize":
        return lambda x, m, r: (x - m) * r
    return lambda x, m, r: tf.nn.batch_normalization(x, *tf.nn.moments(x, axes), None, None, 1e-3)


def xla_parts(shape: Sequence[int], *, dtype: str = "float32", repeats: int = 7, min_seconds: float = 0.05,
              seed: int = 0) -> list[Timing]:
    """Graph-mode and XLA timings of the pieces of a BN forward on one NHWC input (mode = the piece, :data:`PARTS`):
    ``mean`` (``tf.reduce_mean`` over N, H, W: reads ``x``), ``variance`` (mean of ``(x - m)**2`` for a given
    per-channel ``m``: reads ``x``), ``normalize`` (``(x - m) * r`` for given ``m``, ``r``: reads ``x``, writes
    ``y``) and ``moments+normalize`` (``tf.nn.moments`` + ``tf.nn.batch_normalization``, all in one function).
    Variant ``"part"``; ``error``: largest difference of the XLA output from graph mode's (0 for graph)."""
    shape = _check_shape(shape)
    check_positive_int(repeats=repeats)
    dt = tf.as_dtype(dtype)
    x = tf.constant(np.random.default_rng(seed).normal(1.0, 2.0, shape), dt)
    m, r = tf.fill([shape[-1]], tf.constant(1.0, dt)), tf.fill([shape[-1]], tf.constant(0.5, dt))
    results = []
    for part in PARTS:
        moved = BYTES_PER_ELEMENT_MOVED[part] * dt.size * int(np.prod(shape))
        outputs = {}
        for flag in (False, True):
            fn = tf.function(_parts(part), jit_compile=flag)
            samples = time_samples(fn, [x, m, r], repeats=repeats, min_seconds=min_seconds)
            outputs[flag] = fn(x, m, r)
            error = _max_error([outputs[flag]], [outputs[False]])
            results.append(_timing("part", flag, part, dtype, shape, samples, error, moved))
    return results


_HLO_BYTES = {"pred": 1, "s8": 1, "u8": 1, "f16": 2, "bf16": 2, "s16": 2, "u16": 2, "f32": 4, "s32": 4, "u32": 4,
              "f64": 8, "s64": 8, "u64": 8}


def _hlo_bytes(type_text: str) -> int:
    """Bytes of the arrays in an HLO type: ``f32[8,4]{1,0}`` or a tuple ``(f32[8], f16[2,2])``."""
    total = 0
    for dtype, dims in re.findall(r"(\w+)\[([\d,]*)\]", type_text):
        total += _HLO_BYTES.get(dtype, 4) * int(np.prod([int(d) for d in dims.split(",") if d]))
    return total


def hlo_passes(fn: Callable, *args) -> dict:
    """How XLA compiles ``fn(*args)`` (``fn`` a ``tf.function(jit_compile=True)``, ``x`` its first argument),
    read from the optimized HLO (public ``experimental_get_compiler_ir``) of the entry computation:
    ``{"kernels": k, "reading_x": p, "reads": r, "writes": w}``: the instructions that compute (fusions,
    reductions, copies; not parameters, constants, tuples, bitcasts, get-tuple-elements), how many take ``x``
    as an operand, and the bytes all of them read and write (operands and results, intermediates included),
    in units of ``x``'s bytes ``S``, rounded to 0.1. ``r + w`` is the memory traffic if every kernel streams
    its operands from memory once (what XLA's CPU kernels do with tensors larger than the caches)."""
    hlo = fn.experimental_get_compiler_ir(*args)(stage="optimized_hlo")
    entry = hlo[hlo.index("\nENTRY"):].split("\n}")[0].splitlines()[1:]
    assign = re.compile(r"\s*(?:ROOT )?(%[\w.\-]+) = (.*)$")
    types, calls = {}, []
    for line in entry:
        found = assign.match(line)
        if not found:
            continue
        name, rhs = found.groups()
        result_type, _, call = rhs.partition(" ")
        while result_type.count("(") > result_type.count(")"):   # a tuple type has spaces in it
            more, _, call = call.partition(" ")
            result_type += " " + more
        types[name] = result_type
        calls.append((name, call))
    x_name = next((name for name, call in calls if call.startswith("parameter(0)")), None)
    if x_name is None:
        raise ValueError("no parameter(0) in the optimized HLO's entry computation")
    x_bytes = _hlo_bytes(types[x_name])
    skip = re.compile(r"(parameter|constant|tuple|get-tuple-element|bitcast)\(")
    kernels = reading = read = written = 0
    for name, call in calls:
        if skip.match(call):
            continue
        operands = set(re.findall(r"%[\w.\-]+", call.split("), ", 1)[0]))
        kernels += 1
        reading += x_name in operands
        read += sum(_hlo_bytes(types.get(op, "")) for op in operands)
        written += _hlo_bytes(types[name])
    return {"kernels": kernels, "reading_x": reading, "reads": round(read / x_bytes, 1),
            "writes": round(written / x_bytes, 1)}


def float16_profile(shape: Sequence[int], *, repeats: int = 7, min_seconds: float = 0.05, seed: int = 0) -> dict:
    """Why the fused layer is slow in float16 on a CPU: median seconds of its pieces on an NHWC ``shape``.

    Keys: ``copy f16`` (``x * s``), the two casts, ``fused f32 forward`` (the float32 kernel on the same values),
    ``FusedBatchNormV3 on float16 (half kernel)`` (the op called on float16 directly),
    ``fused f16 forward (float32 path)`` (:class:`bnhelpers.layers.fused.FusedBatchNormalization` with
    ``mixed_float16``, which casts around the float32 kernel on a CPU), ``cast + fused f32 + cast`` (the same
    written out) and ``reduce_sum f16 (float32 accum)`` (one reduction over the input). All in training mode,
    graph mode, timed with :func:`bnhelpers.speed.timing.time_call`.
    """
    from ..layers.fused import FusedBatchNormalization

    shape = _check_shape(shape)
    x32 = tf.constant(np.random.default_rng(seed).normal(1.0, 2.0, shape).astype("float32"))
    x16 = tf.cast(x32, tf.float16)
    f32 = FusedBatchNormalization(dtype="float32")
    f16 = FusedBatchNormalization(dtype="mixed_float16")
    f32.build(shape)
    f16.build(shape)
    s = tf.Variable(1.0, dtype=tf.float16)
    ones, zeros, empty = tf.ones(shape[-1]), tf.zeros(shape[-1]), tf.constant([], tf.float32)

    def half_kernel(x):
        return tf.raw_ops.FusedBatchNormV3(x=x, scale=ones, offset=zeros, mean=empty, variance=empty, epsilon=1e-3,
                                           exponential_avg_factor=1.0, data_format="NHWC", is_training=True).y

    pieces = {
        "copy f16": (lambda x: x * s, x16),
        "cast f16->f32": (lambda x: tf.cast(x, tf.float32), x16),
        "cast f32->f16": (lambda x: tf.cast(x, tf.float16), x32),
        "fused f32 forward": (lambda x: f32(x, training=True), x32),
        "fused f16 forward (float32 path)": (lambda x: f16(x, training=True), x16),
        "FusedBatchNormV3 on float16 (half kernel)": (half_kernel, x16),
        "cast + fused f32 + cast": (lambda x: tf.cast(f32(tf.cast(x, tf.float32), training=True), tf.float16), x16),
        "reduce_sum f16 (float32 accum)": (lambda x: tf.reduce_sum(tf.cast(x, tf.float32), axis=[0, 1, 2]), x16),
    }
    return {name: time_call(tf.function(fn), [x], repeats=repeats, min_seconds=min_seconds)
            for name, (fn, x) in pieces.items()}


def folding_speedup(*, blocks: int = 6, width: int = 32, image: int = 32, batch: int = 64, repeats: int = 7,
                    min_seconds: float = 0.05, seed: int = 0) -> dict:
    """Inference time of a convolutional network before and after :func:`bnhelpers.tools.folding.fold_batch_norm`.

    The network: ``blocks`` times ``Conv2D(width, 3, same, no bias) -> BatchNormalization -> ReLU`` on
    ``(image, image, 3)`` inputs, then global average pooling and ``Dense(10)``; the BN layers get random moving
    statistics. Both models run in a ``tf.function`` in float32 on a batch of ``batch`` images. Returns
    ``{"with_bn": s, "folded": s, "max_difference": float, "network": str, "bn_layers": (before, after)}``
    (median seconds per batch; the number of BN layers in the model and in the folded one).
    """
    from ..tools.folding import fold_batch_norm

    check_positive_int(blocks=blocks, width=width, image=image, batch=batch)
    rng = np.random.default_rng(seed)
    layers = [keras.Input((image, image, 3), dtype="float32")]
    for i in range(blocks):
        layers += [keras.layers.Conv2D(width, 3, padding="same", use_bias=False, dtype="float32",
                                       kernel_initializer=keras.initializers.HeNormal(seed=seed + i)),
                   keras.layers.BatchNormalization(dtype="float32"), keras.layers.ReLU(dtype="float32")]
    model = keras.Sequential(layers + [keras.layers.GlobalAveragePooling2D(dtype="float32"),
                                       keras.layers.Dense(10, dtype="float32")])
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.5, width).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, width).astype("float32"))
    folded = fold_batch_norm(model)
    images = tf.constant(rng.normal(0, 1, (batch, image, image, 3)).astype("float32"))
    with_bn = tf.function(lambda v: model(v, training=False))
    without = tf.function(lambda v: folded(v, training=False))
    difference = float(tf.reduce_max(tf.abs(with_bn(images) - without(images))))
    return {"with_bn": time_call(with_bn, [images], repeats=repeats, min_seconds=min_seconds),
            "folded": time_call(without, [images], repeats=repeats, min_seconds=min_seconds),
            "max_difference": difference,
            "network": f"{blocks} x (Conv2D({width}, 3) -> BN -> ReLU) on {batch} x {image}x{image}x3, float32",
            "bn_layers": tuple(sum(isinstance(layer, keras.layers.BatchNormalization) for layer in m.layers)
                               for m in (model, folded))}
