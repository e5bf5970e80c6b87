"""How fast batch normalization runs on this machine: ``make bench`` (not part of ``make test``).

Times training-mode BN forward and forward+backward for Keras 3's layer, tf-keras's fused
layer, ``tf.nn.moments`` + ``tf.nn.batch_normalization``, ``bnhelpers``' ``MomentsBatchNorm`` and
``FusedBatchNormalization``, and the one-pass vs two-pass statistics, each in a ``tf.function`` with
and without XLA, next to the fastest of three copies measured in the same run; then the pieces of BN
(reduction, normalization) in graph mode and XLA, and XLA's compiled program. See
``bnhelpers/speed/bn_speed.py`` for how bytes are counted and ``bnhelpers/speed/report.py`` for the targets.

Inputs are sized from this machine's last-level cache (LLC): ``small`` fits in it, ``large`` is at
least 4x it in each dtype (so float16's large input has twice the images of float32's). Each timing
is the median of ``--repeats`` measurements after warm-up calls; the table shows the spread.

TensorFlow runs with its own defaults here (oneDNN as TensorFlow decides, no op determinism, its own
thread pools), unlike the book's notebooks. Runs on whatever device TensorFlow places ops on.

    python benchmarks/bn_speed.py                 # small and large, float32; large float16 forward (~4 min on 2 cores)
    python benchmarks/bn_speed.py --quick         # small float32 and a 1 x LLC input, no float16 (~40 s)
    python benchmarks/bn_speed.py --json out.json # also every timing, the machine and the summary as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="measurements per timing (median reported; >= 5)")
    parser.add_argument("--min-seconds", type=float, default=0.05, help="least duration of one measurement")
    parser.add_argument("--quick", action="store_true",
                        help="small and a 1 x LLC float32 input, 5 short repeats, no float16 (a smoke test)")
    parser.add_argument("--no-float16", action="store_true", help="skip the float16 forward timings")
    parser.add_argument("--json", help="also write the machine, the settings, every timing and the summary here")
    args = parser.parse_args(argv)
    if args.repeats < 5:
        parser.error(f"--repeats must be >= 5 for a median worth quoting, got {args.repeats}")
    if not args.min_seconds > 0:
        parser.error(f"--min-seconds must be > 0, got {args.min_seconds}")
    if args.quick:
        args.repeats, args.min_seconds, args.no_float16 = 5, 0.02, True
    return args


def plan(args, llc_bytes: int) -> list[dict]:
    """The benchmark calls to make: ``[{"shapes", "dtypes", "modes"}, ...]``."""
    from bnhelpers.speed.bn_speed import MODES, default_shapes

    f32 = default_shapes(llc_bytes, "float32")
    if args.quick:
        # a 1 x LLC input: out of L2, not out of L3; the targets are judged on the full run
        quick_llc = default_shapes(llc_bytes // 4, "float32", channels=64)["large"]
        return [{"shapes": [f32["small"], quick_llc], "dtypes": ["float32"], "modes": list(MODES)}]
    runs = [{"shapes": [f32["small"], f32["large"]], "dtypes": ["float32"], "modes": list(MODES)}]
    if not args.no_float16:
        runs.append({"shapes": [default_shapes(llc_bytes, "float16")["large"]], "dtypes": ["float16"],
                     "modes": ["forward"]})
    return runs


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from bnhelpers.environment import silenced_stderr

    with silenced_stderr():
        import tensorflow as tf

        tf.constant(0.0) + 1.0
    from bnhelpers.speed import bn_speed, report, timing

    start = time.perf_counter()
    machine = timing.machine_description()
    llc = machine["last_level_cache_bytes"]
    runs = plan(args, llc)
    caches = ", ".join(f"{k} {v / 2**10:.0f} KiB" for k, v in machine["caches_bytes"].items()) or "unknown"
    print(f"device: {machine['device']}; {machine['physical_cores']} physical / "
          f"{machine['logical_cores']} logical cores")
    print(f"caches (per instance): {caches}; last level {llc / 2**20:.0f} MiB "
          f"from {machine['last_level_cache_source']}")
    print(f"TensorFlow {machine['tensorflow']}, oneDNN {machine['onednn']}, threads intra "
          f"{machine['intra_op_threads']} inter {machine['inter_op_threads']} (0 = TensorFlow's choice); "
          f"{machine['date_utc']}")
    for run in runs:
        for shape in run["shapes"]:
            size = 1
            for s in shape:
                size *= s
            size *= tf.as_dtype(run["dtypes"][0]).size
            print(f"input {shape} {run['dtypes'][0]}: {size / 1e6:.1f} MB = {size / llc:.1f} x LLC; "
                  f"modes {', '.join(run['modes'])}")
    print(f"median of {args.repeats} measurements, each >= {args.min_seconds} s, after warm-up; "
          "bytes moved per call: forward 2 S, forward+backward 5 S, statistics 1 S, copy 2 S\n")
    results = []
    for run in runs:
        results += bn_speed.benchmark(run["shapes"], dtypes=run["dtypes"], modes=run["modes"],
                                      repeats=args.repeats, min_seconds=args.min_seconds)
    largest = max(runs[0]["shapes"], key=lambda s: s[0] * s[1] * s[2] * s[3])
    parts = bn_speed.xla_parts(largest, repeats=args.repeats, min_seconds=args.min_seconds)
    passes = {}
    x = tf.zeros(largest)
    for variant in ("keras", "fused"):
        for mode in ("forward", "forward+backward"):
            try:
                fn = bn_speed.compiled_variant(variant, mode, largest[-1], tf.float32, True)
                passes[f"{variant} {mode}"] = bn_speed.hlo_passes(fn, x, x)
            except (ImportError, tf.errors.OpError, ValueError) as err:
                print(f"no HLO for {variant} {mode}: {type(err).__name__}: {str(err).splitlines()[0][:80]}")
    numerics = bn_speed.one_pass_error()
    extras = {}
    if not args.quick:
        f16_shape = next((run["shapes"][0] for run in runs if "float16" in run["dtypes"]), None)
        if f16_shape is not None:
            extras["float16_profile"] = {"shape": list(f16_shape), "median_seconds": bn_speed.float16_profile(
                f16_shape, repeats=args.repeats, min_seconds=args.min_seconds)}
        extras["folding"] = bn_speed.folding_speedup(repeats=args.repeats, min_seconds=args.min_seconds)
    print(report.timing_table(results + parts))
    print()
    summary = report.summary_lines(results, parts, passes, llc_bytes=llc)
    summary.append(f"variance of 1e6 values N(1000, 1) in float32, relative error vs float64: one-pass "
                   f"{numerics['one_pass']:.2e}, two-pass {numerics['two_pass']:.2e}")
    if "float16_profile" in extras:
        profile = extras["float16_profile"]["median_seconds"]
        summary.append("float16 profile, time / float16 copy: " + ", ".join(
            f"{k} {v / profile['copy f16']:.1f}" for k, v in profile.items() if k != "copy f16"))
    if "folding" in extras:
        fold = extras["folding"]
        summary.append(f"folding, {fold['network']}: inference {1e3 * fold['with_bn']:.1f} ms with BN, "
                       f"{1e3 * fold['folded']:.1f} ms folded ({fold['with_bn'] / fold['folded']:.2f}x)")
    print("\n".join(summary))
    for t in results:
        if t.status != "ok":
            print(f"not run: {t.variant} {'XLA' if t.jit else 'graph'} {t.mode} {t.dtype} {t.shape}: {t.status}")
    elapsed = time.perf_counter() - start
    print(f"\n({elapsed:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine,
                       "settings": {"repeats": args.repeats, "min_seconds": args.min_seconds, "quick": args.quick,
                                    "runs": runs, "statistic": "median", "seconds_total": round(elapsed, 1)},
                       "results": report.as_records(results), "xla_parts": report.as_records(parts),
                       "hlo_passes": passes, "one_pass_error": numerics, **extras, "summary": summary}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
