"""bnhelpers.speed (bn_speed, timing, report): every variant computes the same BN, the timing measures the call,
the report's bookkeeping is right; and the benchmark script's options (benchmarks/bn_speed.py)."""

import importlib.util
import json
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bnhelpers.speed.bn_speed import BYTES_PER_ELEMENT_MOVED, Timing, benchmark, variant_names
from bnhelpers.speed.report import as_records, best_share, copy_bandwidth, ratio, summary_lines, timing_table
from bnhelpers.speed.timing import device_description, time_call

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (3, 4, 4, 5)


@pytest.fixture(scope="module")
def tiny_results():
    return benchmark([SHAPE], repeats=1)


def test_every_variant_runs_and_agrees_with_tf_nn(tiny_results):
    names = variant_names()
    assert {"keras", "tf_nn", "bnhelpers"} <= set(names)
    assert len(tiny_results) == 2 + len(names) * 2 * 2   # copy + variants x jit x modes
    for t in tiny_results:
        assert t.status == "ok", t
        assert t.error < 1e-4, t
        moved = BYTES_PER_ELEMENT_MOVED[t.mode] * 4 * math.prod(SHAPE)
        assert math.isclose(t.gb_per_s, moved / t.seconds / 1e9, rel_tol=1e-9)


def test_table_summary_and_copy(tiny_results):
    table = timing_table(tiny_results)
    assert len(table.splitlines()) == 3 + len(variant_names()) * 2   # header, rule, copy, rows
    assert "3x4x4x5" in table and "forward+backward" in table
    assert set(copy_bandwidth(tiny_results)) == {(SHAPE, "float32")}
    lines = summary_lines(tiny_results)
    assert any(line.startswith("bnhelpers / keras time") for line in lines)
    assert any("of copy bandwidth" in line for line in lines)
    assert "device" not in device_description() and device_description().split(":")[0] in {"CPU", "GPU"}


def test_float16_runs_or_says_why():
    results = benchmark([SHAPE], variants=["keras", "bnhelpers"], dtypes=["float16"],
                        modes=["forward"], jit=[False], repeats=1)
    variants = [t for t in results if t.mode != "copy"]
    assert sorted(t.variant for t in variants) == ["bnhelpers", "keras"]
    assert all(t.dtype == "float16" and t.shape == SHAPE for t in results)
    ran = [t for t in variants if t.status == "ok"]
    assert ran, [t.status for t in variants]             # on this CPU at least one float16 variant runs
    for t in ran:
        assert math.isfinite(t.seconds) and t.seconds > 0 and math.isfinite(t.gb_per_s) and t.gb_per_s > 0, t
        assert 0 <= t.error < 1e-2, t                    # float16 against the float32 tf_nn reference
    for t in variants:
        if t.status != "ok":
            assert re.fullmatch(r"unsupported: \w+: .+", t.status), t   # names the error and its message
            assert math.isnan(t.seconds) and math.isnan(t.gb_per_s) and math.isnan(t.error), t


def _timing(variant, seconds, jit=False, mode="forward", shape=(1, 1, 1, 1), gbps=1.0):
    return Timing(variant, jit, mode, "float32", shape, seconds, gbps, 0.0)


def test_as_records_are_plain_dicts_for_json():
    record = as_records([_timing("keras", 2.0)])
    assert record == [{"variant": "keras", "jit": False, "mode": "forward", "dtype": "float32", "shape": (1, 1, 1, 1),
                       "seconds": 2.0, "gb_per_s": 1.0, "error": 0.0, "status": "ok"}]
    assert json.loads(json.dumps(record))[0]["shape"] == [1, 1, 1, 1]


def test_ratio_and_best_share_on_made_up_timings():
    results = [_timing("keras", 2.0), _timing("bnhelpers", 3.0), _timing("keras", 1.0, jit=True),
               _timing("bnhelpers", 0.5, jit=True), _timing("copy", 1.0, mode="copy", gbps=10.0),
               _timing("keras", 1.0, shape=(2, 1, 1, 1), gbps=4.0), _timing("tf_nn", 1.0, shape=(2, 1, 1, 1), gbps=6.0),
               _timing("copy", 1.0, mode="copy", shape=(2, 1, 1, 1), gbps=8.0)]
    assert ratio(results, "bnhelpers", "keras", shape=(1, 1, 1, 1)) == [1.5, 0.5]
    assert ratio(results, "bnhelpers", "keras", jit=True) == [0.5]
    assert best_share(results) == {"forward": ("tf_nn", False, 0.75)}
    assert best_share(results, shape=(1, 1, 1, 1)) == {"forward": ("keras", False, 0.1)}
    assert best_share(results, dtype="float16") == {}


def test_time_call_measures_the_call():
    def slow(x):
        time.sleep(0.01)
        return x

    seconds = time_call(slow, [tf.ones((1, 1))], repeats=2, min_seconds=0.02)
    assert 0.009 < seconds < 0.2
    with pytest.raises(ValueError, match="repeats must be >= 1, got 0"):
        time_call(slow, [tf.ones(1)], repeats=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown or unavailable variants"):
        benchmark([SHAPE], variants=["cudnn"])
    with pytest.raises(ValueError, match=r"shapes must be NHWC \(4 positive sizes\), got \(4, 3\)"):
        benchmark([(4, 3)], repeats=1)
    with pytest.raises(ValueError, match=r"unknown modes \['backward'\]; choose from"):
        benchmark([SHAPE], modes=["backward"])


def test_script_options(capsys):
    spec = importlib.util.spec_from_file_location("bn_speed", ROOT / "benchmarks" / "bn_speed.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    quick = script.parse_args(["--quick"])
    assert quick.sizes == ["small", "medium"] and quick.dtypes == ["float32"]
    full = script.parse_args([])
    assert [np.prod(script.SIZES[s]) * 4 > 32e6 for s in full.sizes] == [False, False, True]
    capsys.readouterr()
    with pytest.raises(SystemExit, match="^2$"):           # argparse's exit status for a usage error
        script.parse_args(["--sizes", "huge"])
    assert "invalid choice: 'huge'" in capsys.readouterr().err
