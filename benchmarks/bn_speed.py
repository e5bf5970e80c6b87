"""How fast batch normalization runs on this machine: ``make bench`` (not part of ``make test``).

Times training-mode BN forward and forward+backward for Keras 3's layer, tf-keras's fused
layer, ``tf.nn.moments`` + ``tf.nn.batch_normalization`` and ``bnhelpers.layers.batch_norm.MomentsBatchNorm``,
each in a ``tf.function`` with and without XLA, on NHWC inputs of several sizes, next to a
copy measured in the same run. See ``bnhelpers/speed/bn_speed.py`` for how bytes are counted.

TensorFlow runs with its own defaults here (oneDNN as TensorFlow decides, no op determinism),
unlike the book's notebooks. Runs on whatever device TensorFlow places ops on (a GPU if visible).

    python benchmarks/bn_speed.py                 # three sizes, float32 and float16
    python benchmarks/bn_speed.py --quick         # two small sizes, float32
    python benchmarks/bn_speed.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

SIZES = {
    "small": (8, 28, 28, 32),     # 0.8 MB in float32: fits in cache
    "medium": (32, 56, 56, 64),   # 25.7 MB
    "large": (64, 56, 56, 128),   # 103 MB: larger than any CPU cache
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["small", "medium", "large"])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float16"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small and medium sizes, float32, 3 repeats")
    parser.add_argument("--json", help="also write every timing to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.dtypes, args.repeats = ["small", "medium"], ["float32"], 3
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from bnhelpers.environment import silenced_stderr

    with silenced_stderr():
        import tensorflow as tf

        tf.constant(0.0) + 1.0
    from bnhelpers.speed import bn_speed, report, timing

    print(f"device: {timing.device_description()}")
    print(f"TensorFlow {tf.__version__}, TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')}")
    print(f"sizes: {', '.join(f'{n} {SIZES[n]}' for n in args.sizes)}; dtypes: {', '.join(args.dtypes)}")
    print("bytes moved per call: forward 2 x size(x), forward+backward 5 x size(x), copy 2 x size(x)\n")
    start = time.perf_counter()
    results = bn_speed.benchmark([SIZES[n] for n in args.sizes], dtypes=args.dtypes, repeats=args.repeats)
    print(report.timing_table(results))
    print()
    print("\n".join(report.summary_lines(results)))
    for t in results:
        if t.status != "ok":
            print(f"not run: {t.variant} {'XLA' if t.jit else 'graph'} {t.mode} {t.dtype} {t.shape}: {t.status}")
    print(f"\n({time.perf_counter() - start:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": timing.device_description(), "results": report.as_records(results)}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
