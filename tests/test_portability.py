"""`make portability` (tests/portability/run.py) and its round-off profile, with controls."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np

from bnhelpers.environment import run_python

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "portability"))

import run as portability  # noqa: E402

PROBE = ("from bnhelpers import setup; setup(0); import keras, numpy as np\n"
         "for dtype in ('float32', 'float64'):\n"
         "    keras.utils.set_random_seed(1); layer = keras.layers.Dense(7, dtype=dtype)\n"
         "    x = np.random.default_rng(0).normal(size=(5, 9)).astype(dtype)\n"
         "    print(repr(np.asarray(layer(x)).ravel().tolist()))\n")


def dense_outputs(roundoff):
    """A float32 and a float64 Dense layer's outputs, from one fresh process (with the round-off profile or not)."""
    env = {}
    if roundoff:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(portability.ROUNDOFF), os.environ.get("PYTHONPATH", "")]))
    done = run_python(PROBE, env=env, timeout=180, what="the Dense probe")
    float32, float64 = (np.array(eval(line)) for line in done.stdout.strip().splitlines()[-2:])
    return {"float32": float32, "float64": float64}


def test_roundoff_profile_moves_matmuls_by_about_one_ulp():
    plain_runs, moved_runs = dense_outputs(False), dense_outputs(True)
    for dtype in ("float32", "float64"):
        plain, moved = plain_runs[dtype], moved_runs[dtype]
        relative = np.abs(moved - plain) / np.maximum(np.abs(plain), 1e-30)
        eps = np.finfo(dtype).eps
        print(f"{dtype}: {np.mean(moved != plain):.0%} of the outputs changed, by at most {relative.max() / eps:.1f} eps")
        assert np.mean(moved != plain) > 0.5        # the profile does perturb (else it would test nothing)
        assert relative.max() <= 2 * eps            # ... and by round-off only


def test_pytest_closing_lines_are_read():
    assert portability.summarize("...\n=== 12 passed, 3 failed in 5.0s ===\n") == (12, 3)
    assert portability.summarize("=== 1 failed, 7 passed, 1 error in 9s ===") == (7, 2)
    assert portability.summarize("") == (0, 0)


def test_fakecpu_that_cannot_emulate_skips_every_profile_with_its_reason(tmp_path):
    fake = tmp_path / "fakecpu"
    fake.write_text("#!/bin/sh\n"
                    "[ \"$1\" = --list ] && { echo 'alpha  FAKE_L1D_KB=32'; echo 'beta  FAKE_L1D_KB=48'; exit 0; }\n"
                    "[ \"$1\" = --check ] && { echo 'fakecpu: CPUID faulting is not available' >&2; exit 3; }\n"
                    "exit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    profiles = portability.fakecpu_profiles(fake)
    assert [p.name for p in profiles] == ["alpha", "beta"]
    assert all(p.skip == "fakecpu: CPUID faulting is not available" for p in profiles)
    assert portability.fakecpu_profiles(tmp_path / "missing")[0].skip.endswith("not found")


def test_a_skipped_profile_is_never_reported_as_passed(tmp_path):
    notebook = tmp_path / "tiny.ipynb"
    notebook.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "portability" / "run.py"), "--fakecpu",
                           str(tmp_path / "missing"), "--skip-this-machine", "--only", "this-machine",
                           "fakecpu (all profiles)", "--logs", str(tmp_path), str(notebook)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "portability: 0 passed, 0 failed, 2 skipped"
