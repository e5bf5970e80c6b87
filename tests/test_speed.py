"""bnhelpers.speed (bn_speed, timing, report): every variant computes the same BN, the timing measures the call
and summarizes it by median and spread, the machine is read from (fake) sysfs and /proc/cpuinfo, the report's
bookkeeping and targets are right, the one-pass variance cancels where the two-pass one does not; and the benchmark
script's options and its JSON (benchmarks/bn_speed.py)."""

import importlib.util
import json
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bnhelpers.speed import bn_speed
from bnhelpers.speed.bn_speed import (BYTES_PER_ELEMENT_MOVED, COPIES, Timing, benchmark, compiled_variant,
                                      default_shapes, hlo_passes, one_pass_error, one_pass_moments,
                                      two_pass_moments, variant_names, xla_parts)
from bnhelpers.speed.report import (as_records, best_share, copy_bandwidth, copy_reference, fastest, from_records,
                                    ratio, summary_lines, target_lines, timing_table, xla_lines)
from bnhelpers.speed.timing import (DEFAULT_LLC_BYTES, Samples, cache_sizes, device_description, last_level_cache,
                                    machine_description, parse_size, summarize, time_call, time_samples)

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (3, 4, 4, 5)


@pytest.fixture(scope="module")
def tiny_results():
    return benchmark([SHAPE], repeats=2, min_seconds=0.0)


def _fused_available():
    try:
        bn_speed._fused_layer()
    except ImportError:
        return False
    return True


def test_every_variant_runs_and_agrees_with_its_reference(tiny_results):
    layers, stats = variant_names(), variant_names("statistics")
    assert {"keras", "tf_nn", "bnhelpers", "fused"} <= set(layers) and stats == ["two_pass", "one_pass"]
    assert variant_names("copy") == list(COPIES)
    assert len(tiny_results) == 2 * (len(COPIES) + 2 * len(layers) + len(stats)) - 1   # x jit; layers in 2 modes
    assert not any(t.variant == "copy_memcpy" and t.jit for t in tiny_results)   # DeepCopy has no XLA kernel
    for t in tiny_results:
        if t.variant == "fused" and not _fused_available():
            assert t.status.startswith("unavailable: "), t
            continue
        assert t.status == "ok", t
        assert t.error < 1e-4, t
        assert t.repeats == 2 and t.seconds_min <= t.seconds <= t.seconds_max, t
        moved = BYTES_PER_ELEMENT_MOVED[t.mode] * 4 * math.prod(SHAPE)
        assert math.isclose(t.gb_per_s, moved / t.seconds / 1e9, rel_tol=1e-9)


def test_copies_really_copy():
    x = tf.random.normal(SHAPE)
    for variant in COPIES:
        y = compiled_variant(variant, "copy", SHAPE[-1], tf.float32, False)(x, x)
        np.testing.assert_array_equal(y.numpy(), x.numpy())
    outputs = compiled_variant("keras", "forward+backward", SHAPE[-1], tf.float32, False)(x, x)
    assert [tuple(o.shape) for o in outputs] == [SHAPE, SHAPE, (5,), (5,)]
    with pytest.raises(ValueError, match="unknown variant 'cudnn'; choose from"):
        compiled_variant("cudnn", "forward", 5, tf.float32, False)


def test_table_summary_and_copy(tiny_results):
    table = timing_table(tiny_results)
    rows = len(COPIES) + 2 * len(variant_names()) + 2
    assert len(table.splitlines()) == 2 + rows   # header, rule, rows
    assert "3x4x4x5" in table and "forward+backward" in table and "spread" in table.splitlines()[0]
    reference = copy_reference(tiny_results)
    assert set(reference) == {(SHAPE, "float32")}
    copies = [t.gb_per_s for t in tiny_results if t.mode == "copy" and t.status == "ok"]
    assert copy_bandwidth(tiny_results)[(SHAPE, "float32")] == max(copies) == reference[(SHAPE, "float32")].gb_per_s
    lines = summary_lines(tiny_results)
    assert any(line.startswith("bnhelpers / keras time") for line in lines)
    assert any("of copy bandwidth" in line for line in lines)
    assert any(line.startswith("statistics on the largest float32 input: one_pass / two_pass time") for line in lines)
    assert sum(line.startswith("target ") for line in lines) == 3
    assert "device" not in device_description() and device_description().split(":")[0] in {"CPU", "GPU"}


def test_float16_runs_or_says_why():
    results = benchmark([SHAPE], variants=["keras", "bnhelpers"], dtypes=["float16"],
                        modes=["forward"], jit=[False], repeats=2, min_seconds=0.0)
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


def test_fused_is_skipped_when_its_module_is_missing(monkeypatch):
    def missing():
        raise ImportError("No module named 'bnhelpers.layers.fused'")

    monkeypatch.setattr(bn_speed, "_fused_layer", missing)
    results = benchmark([SHAPE], variants=["fused"], modes=["forward"], jit=[False], repeats=2, min_seconds=0.0)
    fused = [t for t in results if t.variant == "fused"]
    assert len(fused) == 1 and math.isnan(fused[0].seconds)
    assert fused[0].status == "unavailable: ImportError: No module named 'bnhelpers.layers.fused'"
    assert target_lines(results)[0].endswith("not measured (no fused timing in float32 forward+backward)")


def _timing(variant, seconds, jit=False, mode="forward", shape=(1, 1, 1, 1), gbps=1.0, dtype="float32"):
    return Timing(variant, jit, mode, dtype, shape, seconds, gbps, 0.0, "ok", seconds * 0.9, seconds * 1.2, 5)


def test_as_records_are_plain_dicts_and_round_trip_through_json(tmp_path):
    record = as_records([_timing("keras", 2.0)])
    assert record == [{"variant": "keras", "jit": False, "mode": "forward", "dtype": "float32", "shape": (1, 1, 1, 1),
                       "seconds": 2.0, "gb_per_s": 1.0, "error": 0.0, "status": "ok", "seconds_min": 1.8,
                       "seconds_max": 2.4, "repeats": 5}]
    nan_timing = Timing("fused", True, "forward", "float16", (2, 1, 1, 3), math.nan, math.nan, math.nan,
                        "unavailable: x")
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"results": as_records([_timing("keras", 2.0), nan_timing])}))
    back = from_records(json.loads(path.read_text())["results"])
    assert back[0] == _timing("keras", 2.0) and back[1].shape == (2, 1, 1, 3) and math.isnan(back[1].seconds)
    assert from_records([{**record[0], "seconds_min": None}])[0].seconds_min != 0.0   # null reads as NaN
    with pytest.raises(ValueError, match=r"a timing record lacks \['seconds'\]"):
        from_records([{k: v for k, v in record[0].items() if k != "seconds"}])


def test_ratio_best_share_and_fastest_on_made_up_timings():
    results = [_timing("keras", 2.0), _timing("bnhelpers", 3.0), _timing("keras", 1.0, jit=True),
               _timing("bnhelpers", 0.5, jit=True), _timing("copy", 1.0, mode="copy", gbps=10.0),
               _timing("keras", 1.0, shape=(2, 1, 1, 1), gbps=4.0), _timing("tf_nn", 1.0, shape=(2, 1, 1, 1), gbps=6.0),
               _timing("copy", 1.0, mode="copy", shape=(2, 1, 1, 1), gbps=8.0),
               _timing("copy_memcpy", 1.0, mode="copy", shape=(2, 1, 1, 1), gbps=5.0)]
    assert ratio(results, "bnhelpers", "keras", shape=(1, 1, 1, 1)) == [1.5, 0.5]
    assert ratio(results, "bnhelpers", "keras", jit=True) == [0.5]
    assert best_share(results) == {"forward": ("tf_nn", False, 0.75)}
    assert best_share(results, shape=(1, 1, 1, 1)) == {"forward": ("keras", False, 0.1)}
    assert best_share(results, dtype="float16") == {}
    assert copy_reference(results)[((2, 1, 1, 1), "float32")].variant == "copy"
    assert fastest(results, "bnhelpers", "forward", shape=(1, 1, 1, 1)).jit is True
    assert fastest(results, "keras", "forward").shape == (2, 1, 1, 1)      # default: the largest shape
    assert fastest(results, "fused", "forward") is None


def test_targets_say_met_or_not_met():
    big = (8, 1, 1, 1)
    results = [_timing("keras", 3.2, mode="forward+backward", shape=big),
               _timing("fused", 1.0, mode="forward+backward", shape=big, gbps=7.0),
               _timing("fused", 2.0, mode="forward+backward", shape=big, jit=True, gbps=3.5),
               _timing("copy", 1.0, mode="copy", shape=big, gbps=10.0),
               _timing("fused", 1.0, shape=(16, 1, 1, 1), dtype="float16", gbps=2.0),
               _timing("copy", 1.0, mode="copy", shape=(16, 1, 1, 1), dtype="float16", gbps=8.0)]
    lines = target_lines(results)
    assert lines[0] == ("target keras / fused time, float32 forward+backward: 3.20x (target >= 3x) met "
                        "[8x1x1x1; keras graph 3200.0 ms / fused graph 1000.0 ms]")
    assert lines[1].startswith("target fused GB/s / copy, float32 forward+backward: 70% (target >= 60%) met")
    assert lines[2].startswith("target fused GB/s / copy, float16 forward: 25% (target >= 30%) not met [16x1x1x1;")
    small = target_lines(results, llc_bytes=16)             # 8 float32 values = 32 bytes = 2 x a 16-byte "LLC"
    assert small[0].endswith("fused graph 1000.0 ms; input only 2.0 x LLC, the targets are for >= 4 x]")
    assert target_lines(results, llc_bytes=8)[0].endswith("fused graph 1000.0 ms]")   # 4 x LLC: no remark
    with pytest.raises(ValueError, match="llc_bytes must be a positive int, got 0"):
        target_lines(results, llc_bytes=0)


def test_summarize_median_and_spread():
    s = summarize([0.4, 0.1, 0.3, 0.2, 10.0], number=3)
    assert s == Samples(median=0.3, min=0.1, max=10.0, q1=0.2, q3=0.4, repeats=5, number=3)
    assert summarize([1.0, 2.0]).median == 1.5 and summarize([1.0, 2.0]).q1 == 1.25
    assert s.as_dict()["max"] == 10.0
    with pytest.raises(ValueError, match="summarize needs at least one sample, got none"):
        summarize([])
    with pytest.raises(ValueError, match=r"samples must be finite seconds > 0, got \[1.0, -1.0\]"):
        summarize([1.0, -1.0])
    with pytest.raises(ValueError, match="number must be a positive int, got 0"):
        summarize([1.0], number=0)


def test_time_samples_and_time_call_measure_the_call():
    calls = []

    def slow(x):
        calls.append(1)
        time.sleep(0.01)
        return x

    s = time_samples(slow, [tf.ones((1, 1))], repeats=3, min_seconds=0.0, warmup=1)
    assert len(calls) == 1 + 1 + 3 and s.number == 1 and s.repeats == 3   # warm-up, sizing call, repeats
    assert 0.009 < s.min <= s.median <= s.max < 0.2
    seconds = time_call(slow, [tf.ones((1, 1))], repeats=2, min_seconds=0.02)
    assert 0.009 < seconds < 0.2
    with pytest.raises(ValueError, match="repeats must be a positive int, got 0"):
        time_call(slow, [tf.ones(1)], repeats=0)
    with pytest.raises(ValueError, match="min_seconds must be a finite number >= 0, got -1"):
        time_samples(slow, [tf.ones(1)], min_seconds=-1)


def _fake_sysfs(root, entries):
    for i, (level, kind, size) in enumerate(entries):
        d = root / f"index{i}"
        d.mkdir(parents=True)
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    return str(root)


def test_cache_sizes_from_fake_sysfs_and_cpuinfo(tmp_path):
    sysfs = _fake_sysfs(tmp_path / "cache", [(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "2048K"),
                                             (3, "Unified", "30720K")])
    sizes = cache_sizes(sysfs)
    assert sizes == {"L1d": 48 * 1024, "L1i": 32 * 1024, "L2": 2 * 2**20, "L3": 30 * 2**20}
    assert last_level_cache(sizes) == (30 * 2**20, "sysfs L3")
    no_l3 = cache_sizes(_fake_sysfs(tmp_path / "c2", [(1, "Data", "32K"), (2, "Unified", "1024K")]))
    assert last_level_cache(no_l3) == (2**20, "sysfs L2")
    cpuinfo = "processor\t: 0\nmodel name\t: Fake CPU\ncache size\t: 16384 KB\n\n"
    from_cpuinfo = cache_sizes(str(tmp_path / "absent"), cpuinfo_text=cpuinfo)
    assert from_cpuinfo == {"LLC": 16 * 2**20}
    assert last_level_cache(from_cpuinfo) == (16 * 2**20, "/proc/cpuinfo 'cache size'")
    assert cache_sizes(str(tmp_path / "absent"), cpuinfo_text="processor\t: 0\n") == {}
    assert last_level_cache({}) == (DEFAULT_LLC_BYTES, "default (no cache size found)") and DEFAULT_LLC_BYTES == 2**25


def test_parse_size():
    assert [parse_size(s) for s in ("32K", "1024K", "32768 KB", "2 MiB", "512", "1G")] == \
        [32768, 2**20, 2**25, 2**21, 512, 2**30]
    with pytest.raises(ValueError, match="cannot read a cache size from 'lots'; expected e.g. '32K'"):
        parse_size("lots")


def test_machine_description_is_json_ready():
    machine = json.loads(json.dumps(machine_description()))
    expected = {"device", "cpu_model", "logical_cores", "physical_cores", "caches_bytes", "last_level_cache_bytes",
                "last_level_cache_source", "tensorflow", "intra_op_threads", "inter_op_threads", "onednn",
                "platform", "python", "date_utc"}
    assert set(machine) == expected
    assert machine["tensorflow"] == tf.__version__ and machine["logical_cores"] >= 1
    assert machine["last_level_cache_bytes"] >= 2**16 and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00",
                                                                      machine["date_utc"])


def test_default_shapes_are_sized_from_the_cache():
    shapes = default_shapes(32 * 2**20)
    assert shapes == {"small": (8, 28, 28, 128), "large": (88, 56, 56, 128)}
    large = math.prod(shapes["large"]) * 4
    assert 4 * 2**25 <= large < 4 * 2**25 + 8 * 56 * 56 * 128 * 4 and math.prod(shapes["small"]) * 4 < 2**25
    assert default_shapes(32 * 2**20, "float16")["large"] == (168, 56, 56, 128)   # 4 x LLC in float16 too
    assert default_shapes(2**20, channels=64)["large"] == (8, 56, 56, 64)          # at least 8 images
    with pytest.raises(ValueError, match="llc_bytes must be a positive int, got 0"):
        default_shapes(0)


def test_one_pass_cancels_where_two_pass_does_not():
    x = tf.constant(np.random.default_rng(1).normal(3.0, 2.0, (4, 3, 3, 2)), tf.float64)
    for moments in (one_pass_moments, two_pass_moments):
        mean, variance = moments(x)
        np.testing.assert_allclose(mean.numpy(), x.numpy().mean(axis=(0, 1, 2)), rtol=1e-12)
        np.testing.assert_allclose(variance.numpy(), x.numpy().var(axis=(0, 1, 2)), rtol=1e-10)
    errors = one_pass_error(n=100_000)
    print(f"relative variance error, N(1000, 1) in float32: one-pass {errors['one_pass']:.2e}, "
          f"two-pass {errors['two_pass']:.2e}")
    assert abs(errors["variance"] - 1.0) < 0.02
    assert errors["one_pass"] > 1e-3       # the docstring's claim: cancellation ruins the one-pass variance
    assert errors["two_pass"] < 1e-5
    tame = one_pass_error(n=100_000, mean=0.0)
    assert tame["one_pass"] < 1e-5         # with |mean| << std the one-pass formula is fine
    with pytest.raises(ValueError, match=r"need a finite mean and std > 0, got mean=0.0, std=0.0"):
        one_pass_error(n=10, mean=0.0, std=0.0)


def test_xla_parts_and_hlo_passes():
    parts = xla_parts(SHAPE, repeats=2, min_seconds=0.0)
    assert [(t.mode, t.jit) for t in parts] == [(m, j) for m in ("mean", "variance", "normalize", "moments+normalize")
                                                for j in (False, True)]
    assert all(t.status == "ok" and t.error < 1e-5 and t.variant == "part" for t in parts), parts
    x = tf.zeros(SHAPE)
    copy = hlo_passes(tf.function(lambda x, dy: x * 2.0, jit_compile=True), x, x)
    assert copy == {"kernels": 1, "reading_x": 1, "reads": 1.0, "writes": 1.0}
    two = hlo_passes(tf.function(lambda x, dy: (x - tf.reduce_mean(x, axis=[0, 1, 2])) * 2.0, jit_compile=True), x, x)
    assert two["reading_x"] == 2 and two["reads"] == 2.0 and two["writes"] == 1.0, two
    keras_counts = hlo_passes(compiled_variant("keras", "forward", SHAPE[-1], tf.float32, True), x, x)
    print(f"XLA on {SHAPE}: mean-and-normalize {two}, keras forward {keras_counts}")
    assert keras_counts["reading_x"] >= 2 and keras_counts["writes"] >= 1.0   # statistics, normalization read x
    lines = xla_lines(parts, {"keras forward": keras_counts, "fused forward+backward": {
        "kernels": 14, "reading_x": 5, "reads": 10.0, "writes": 4.0}})
    assert re.fullmatch(r"XLA / graph time on 3x4x4x5: mean [\d.]+x, variance [\d.]+x, normalize [\d.]+x, "
                        r"moments\+normalize [\d.]+x", lines[0]), lines[0]
    assert lines[1].startswith(f"XLA's optimized HLO, keras forward: {keras_counts['kernels']} kernels, "
                               f"{keras_counts['reading_x']} read x; ")
    assert lines[2] == ("XLA's optimized HLO, fused forward+backward: 14 kernels, 5 read x; they read 10.0 S and "
                        "write 4.0 S = 14.0 S (the call's interface: 5 S)")
    assert xla_lines([]) == []


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown or unavailable variants"):
        benchmark([SHAPE], variants=["cudnn"])
    with pytest.raises(ValueError, match=r"shapes must be NHWC \(4 positive sizes\), got \(4, 3\)"):
        benchmark([(4, 3)], repeats=1)
    with pytest.raises(ValueError, match=r"unknown modes \['backward'\]; choose from"):
        benchmark([SHAPE], modes=["backward"])
    with pytest.raises(ValueError, match="repeats must be a positive int, got 0"):
        benchmark([SHAPE], repeats=0)
    with pytest.raises(ValueError, match=r"unknown mode 'backward'; choose from"):
        variant_names("backward")
    with pytest.raises(ValueError, match=r"shapes must be NHWC \(4 positive sizes\), got \(0, 1, 1, 1\)"):
        xla_parts((0, 1, 1, 1))


def _script():
    spec = importlib.util.spec_from_file_location("bn_speed_script", ROOT / "benchmarks" / "bn_speed.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_script_options_and_plan(capsys):
    script = _script()
    quick = script.parse_args(["--quick"])
    assert (quick.repeats, quick.min_seconds, quick.no_float16) == (5, 0.02, True)
    llc = 32 * 2**20
    assert script.plan(quick, llc) == [{"shapes": [(8, 28, 28, 128), (48, 56, 56, 64)], "dtypes": ["float32"],
                                        "modes": ["forward", "forward+backward", "statistics"]}]
    full = script.parse_args([])
    assert full.repeats == 7
    runs = script.plan(full, llc)
    assert [r["dtypes"] for r in runs] == [["float32"], ["float16"]] and runs[1]["modes"] == ["forward"]
    for run in runs:
        size = math.prod(run["shapes"][-1]) * tf.as_dtype(run["dtypes"][0]).size
        assert size >= 4 * llc, run                  # the large inputs are >= 4 x LLC in their dtype
    assert len(script.plan(script.parse_args(["--no-float16"]), llc)) == 1
    capsys.readouterr()
    with pytest.raises(SystemExit, match="^2$"):           # argparse's exit status for a usage error
        script.parse_args(["--repeats", "3"])
    assert "--repeats must be >= 5 for a median worth quoting, got 3" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="^2$"):
        script.parse_args(["--min-seconds", "0"])
    assert "--min-seconds must be > 0, got 0.0" in capsys.readouterr().err


def test_script_writes_json_that_round_trips(tmp_path, monkeypatch, capsys):
    script = _script()
    monkeypatch.setattr(script, "plan", lambda args, llc: [{"shapes": [SHAPE], "dtypes": ["float32"],
                                                            "modes": ["forward", "forward+backward"]}])
    path = tmp_path / "bench.json"
    assert script.main(["--quick", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "caches (per instance): " in out and "XLA / graph time on 3x4x4x5: mean " in out
    saved = json.loads(path.read_text())
    assert set(saved) == {"machine", "settings", "results", "xla_parts", "hlo_passes", "one_pass_error", "summary"}
    assert saved["settings"]["repeats"] == 5 and saved["settings"]["statistic"] == "median"
    results = from_records(saved["results"])
    assert {t.variant for t in results} >= {"copy", "keras", "fused"} and all(t.shape == SHAPE for t in results)
    assert saved["summary"] == [line for line in out.splitlines() if line in saved["summary"]]   # printed as saved
    assert saved["summary"][0].startswith("target keras / fused time, float32 forward+backward: ")
    assert set(saved["hlo_passes"]) == {"keras forward", "keras forward+backward", "fused forward",
                                        "fused forward+backward"}
    assert saved["one_pass_error"]["one_pass"] > 1e-3 > 1e-5 > saved["one_pass_error"]["two_pass"]


def test_float16_profile_times_every_piece():
    profile = bn_speed.float16_profile((2, 4, 4, 8), repeats=2, min_seconds=0.001)
    assert set(profile) == {"copy f16", "cast f16->f32", "cast f32->f16", "fused f32 forward",
                            "fused f16 forward (float32 path)", "FusedBatchNormV3 on float16 (half kernel)",
                            "cast + fused f32 + cast", "reduce_sum f16 (float32 accum)"}
    assert all(np.isfinite(v) and v > 0 for v in profile.values())
    with pytest.raises(ValueError, match="NHWC"):
        bn_speed.float16_profile((2, 4, 8))


def test_folding_speedup_compares_the_same_function():
    fold = bn_speed.folding_speedup(blocks=2, width=4, image=8, batch=2, repeats=2, min_seconds=0.001)
    assert fold["with_bn"] > 0 and fold["folded"] > 0 and fold["max_difference"] < 1e-4
    assert fold["network"] == "2 x (Conv2D(4, 3) -> BN -> ReLU) on 2 x 8x8x3, float32"
    assert fold["bn_layers"] == (2, 0)
    with pytest.raises(ValueError, match="blocks must be a positive int, got 0"):
        bn_speed.folding_speedup(blocks=0)
