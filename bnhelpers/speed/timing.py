"""Timing on whatever device TensorFlow computes on, and a description of the machine it ran on.

:func:`time_samples` warms up (tracing, compiling, first touch of the memory), then takes
``repeats`` measurements, each running the call enough times to last about ``min_seconds``
(so the timer's resolution does not matter); it returns every per-call time in a
:class:`Samples`, whose ``median`` is the number to quote and whose ``min``/``max`` and
quartiles (``q1``, ``q3``, linear interpolation as ``numpy.percentile``) give the spread.
:func:`time_call` is its median. :func:`sync` waits for asynchronous GPU kernels.

The machine: :func:`cache_sizes` reads the CPU caches (bytes per cache level, e.g.
``{"L1d": 32768, "L2": 1048576, "L3": 33554432}``) from Linux's sysfs
(``/sys/devices/system/cpu/cpu0/cache/index*/{level,type,size}``), falling back to
``/proc/cpuinfo``'s ``cache size`` line (taken as the last level) and then to
:data:`DEFAULT_LLC_BYTES` (32 MiB, a common server L3) in :func:`last_level_cache`.
:func:`machine_description` gathers CPU model, logical/physical cores, caches, TensorFlow
version, thread settings, oneDNN and the date of the run into one JSON-ready dict.

Chapters: 8, 11.
"""

from __future__ import annotations

import datetime
import glob
import os
import platform
import re
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from ..core.validation import check_positive_int

__all__ = ["DEFAULT_LLC_BYTES", "Samples", "cache_sizes", "device_description", "last_level_cache",
           "machine_description", "parse_size", "summarize", "sync", "time_call", "time_samples"]

DEFAULT_LLC_BYTES = 32 * 2**20   # when neither sysfs nor /proc/cpuinfo says: a common server L3
SYSFS_CACHE = "/sys/devices/system/cpu/cpu0/cache"
CPUINFO = "/proc/cpuinfo"


@dataclass(frozen=True)
class Samples:
    """Seconds per call: the ``median`` of ``repeats`` measurements, their ``min``, ``max`` and
    quartiles ``q1``, ``q3``; ``number``: calls per measurement."""

    median: float
    min: float
    max: float
    q1: float
    q3: float
    repeats: int
    number: int = 1

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(samples: Sequence[float], number: int = 1) -> Samples:
    """:class:`Samples` of a list of per-call times (``ValueError`` if empty or not all finite and > 0)."""
    values = np.asarray(list(samples), dtype=np.float64)
    if values.size == 0:
        raise ValueError("summarize needs at least one sample, got none")
    if not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError(f"samples must be finite seconds > 0, got {values.tolist()}")
    check_positive_int(number=number)
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return Samples(float(median), float(values.min()), float(values.max()), float(q1), float(q3),
                   int(values.size), int(number))


def device_description() -> str:
    """The device TensorFlow computes on by default, in words."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU: {details.get('device_name', gpus[0].name)} ({len(gpus)} visible)"
    model = _cpuinfo_field(_read(CPUINFO), "model name") or platform.processor() or platform.machine()
    return f"CPU: {model} ({os.cpu_count()} logical cores)"


def sync(result) -> None:
    """Block until ``result`` is computed (GPU kernels run asynchronously)."""
    first = tf.nest.flatten(result)[0]
    first[(0,) * len(first.shape)].numpy()


def time_samples(fn: Callable, args: Sequence, *, repeats: int = 7, min_seconds: float = 0.05,
                 warmup: int = 2) -> Samples:
    """Per-call seconds of ``fn(*args)`` over ``repeats`` measurements, after ``warmup`` calls.

    Each measurement runs ``number`` calls back to back, ``number`` chosen from one timed call so
    that a measurement lasts about ``min_seconds`` (at least one call). Report the median; the
    spread (min, max, quartiles) says how much the machine's load moved it.
    """
    check_positive_int(repeats=repeats, warmup=warmup)
    if not (isinstance(min_seconds, (int, float)) and np.isfinite(min_seconds) and min_seconds >= 0):
        raise ValueError(f"min_seconds must be a finite number >= 0, got {min_seconds!r}")
    for _ in range(warmup):
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
        samples.append(max(time.perf_counter() - start, 1e-12) / number)
    return summarize(samples, number)


def time_call(fn: Callable, args: Sequence, *, repeats: int = 7, min_seconds: float = 0.05) -> float:
    """Seconds per call of ``fn(*args)``: the median of :func:`time_samples` (two warm-up calls)."""
    return time_samples(fn, args, repeats=repeats, min_seconds=min_seconds).median


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _cpuinfo_field(text: str | None, field: str) -> str | None:
    for line in (text or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == field:
            return value.strip()
    return None


def parse_size(text: str) -> int:
    """Bytes in a cache size as Linux writes it: ``"32K"``, ``"1024K"``, ``"32768 KB"``, ``"2 MiB"``, ``"512"``."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(?:i?B)?\s*", str(text), re.I)
    if match is None:
        raise ValueError(f"cannot read a cache size from {text!r}; expected e.g. '32K' or '1024 KB'")
    return int(match.group(1)) * 1024 ** " KMG".index(match.group(2).upper() or " ")


def cache_sizes(sysfs_dir: str = SYSFS_CACHE, cpuinfo_text: str | None = None) -> dict:
    """``{"L1d": bytes, "L1i": bytes, "L2": bytes, "L3": bytes}`` of one core's caches, from
    ``sysfs_dir/index*/{level,type,size}``; if that is missing, ``{"LLC": bytes}`` from the
    ``cache size`` line of ``/proc/cpuinfo`` (or of ``cpuinfo_text``); ``{}`` when neither says.
    Sizes are per cache instance (an L3 shared by all cores is counted once)."""
    sizes = {}
    for index in sorted(glob.glob(os.path.join(sysfs_dir, "index*"))):
        level, kind, size = (_read(os.path.join(index, name)) for name in ("level", "type", "size"))
        if level is None or size is None:
            continue
        suffix = {"Data": "d", "Instruction": "i"}.get((kind or "").strip(), "")
        sizes[f"L{int(level)}{suffix}"] = parse_size(size)
    if sizes:
        return sizes
    field = _cpuinfo_field(cpuinfo_text if cpuinfo_text is not None else _read(CPUINFO), "cache size")
    return {"LLC": parse_size(field)} if field else {}


def last_level_cache(sizes: dict | None = None) -> tuple[int, str]:
    """``(bytes, where from)`` of the last-level cache: the highest level in ``sizes``
    (default :func:`cache_sizes`), else :data:`DEFAULT_LLC_BYTES`."""
    sizes = cache_sizes() if sizes is None else sizes
    if "LLC" in sizes:
        return sizes["LLC"], "/proc/cpuinfo 'cache size'"
    levels = {k: v for k, v in sizes.items() if not k.endswith("i")}
    if levels:
        top = max(levels, key=lambda k: int(k[1]))
        return levels[top], f"sysfs {top}"
    return DEFAULT_LLC_BYTES, "default (no cache size found)"


def _physical_cores(cpuinfo: str | None) -> int | None:
    cores, current = set(), {}
    for line in (cpuinfo or "").splitlines() + [""]:
        key, _, value = line.partition(":")
        if not line.strip():
            if "core id" in current:
                cores.add((current.get("physical id"), current["core id"]))
            current = {}
        else:
            current[key.strip()] = value.strip()
    return len(cores) or None


def _onednn() -> str:
    setting = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    if setting is not None:
        return "on" if setting.strip().lower() in {"1", "true"} else f"off (TF_ENABLE_ONEDNN_OPTS={setting})"
    on_by_default = platform.machine().lower() in {"x86_64", "amd64"}
    return "on (TensorFlow's default on x86)" if on_by_default else "TensorFlow's default for this CPU"


def machine_description() -> dict:
    """What a timing depends on, JSON-ready: device, CPU model, cores, caches, TensorFlow and its
    thread settings (0 means TensorFlow picks), oneDNN, and the UTC date and time."""
    cpuinfo = _read(CPUINFO)
    caches = cache_sizes()
    llc, llc_source = last_level_cache(caches)
    return {
        "device": device_description(),
        "cpu_model": _cpuinfo_field(cpuinfo, "model name") or platform.processor() or platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": _physical_cores(cpuinfo),
        "caches_bytes": caches,
        "last_level_cache_bytes": llc,
        "last_level_cache_source": llc_source,
        "tensorflow": tf.__version__,
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "onednn": _onednn(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
