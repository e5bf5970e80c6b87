"""``make portability``: run nbval over every notebook as if on other CPUs.

Stored notebook outputs must be what every CPU prints (README, "Writing a
chapter"). This runs ``pytest --nbval`` over ``book/`` once per *profile* and
reports, per profile, how many cells passed and failed and how long it took:

- ``this-machine``: the CPU the command runs on, as it is.
- one profile per line of ``fakecpu --list`` (``../shared/tools/fakecpu``, or
  ``$FAKECPU``): the same machine answering ``CPUID`` like another CPU (vendor,
  cache sizes, AVX-512), so that oneDNN, Eigen and OpenBLAS choose the kernels and
  block sizes they would choose there. Where ``fakecpu --check`` says this
  machine cannot do that (it needs CPUID faulting), each of them is reported as
  SKIPPED with the reason, never as passed.
- ``round-off``: this machine with every TensorFlow matrix multiply and
  convolution off by about one unit in the last place
  (``tests/portability/roundoff/sitecustomize.py``), the size of the difference
  between two CPUs that sum in different orders. It runs on any machine and fails
  wherever a printed output depends on round-off, whichever CPU would expose it.

Profiles run side by side, ``--jobs`` at a time (default: one per core; the
notebooks' TensorFlow ops use one thread each, see ``bnhelpers.setup``). The
last line reads ``portability: N passed, N failed, N skipped`` (profiles); the
exit status is 1 if any profile failed. Each profile's pytest log is kept in
``--logs`` (default ``_build/portability``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROUNDOFF = Path(__file__).resolve().parent / "roundoff"
DEFAULT_FAKECPU = ROOT.parent / "shared" / "tools" / "fakecpu" / "fakecpu"


@dataclass
class Profile:
    name: str
    prefix: list[str] = field(default_factory=list)  # command put before python (fakecpu NAME)
    env: dict[str, str] = field(default_factory=dict)
    skip: str | None = None  # the reason it cannot run here
    passed: int = 0
    failed: int = 0
    seconds: float = 0.0
    status: str = "not run"


def fakecpu_profiles(fakecpu: Path) -> list[Profile]:
    """One profile per ``fakecpu --list`` line; all SKIPPED (with why) where it cannot run here."""
    if not fakecpu.is_file():
        return [Profile("fakecpu (all profiles)", skip=f"{fakecpu} not found")]
    listed = subprocess.run([str(fakecpu), "--list"], capture_output=True, text=True)
    names = [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]
    if listed.returncode != 0 or not names:
        return [Profile("fakecpu (all profiles)", skip=f"fakecpu --list failed: {listed.stderr.strip()}")]
    check = subprocess.run([str(fakecpu), "--check"], capture_output=True, text=True)
    reason = None
    if check.returncode != 0:
        reason = (check.stdout + check.stderr).strip().splitlines()
        reason = reason[-1] if reason else f"fakecpu --check exited {check.returncode}"
    return [Profile(name, prefix=[str(fakecpu), name], skip=reason) for name in names]


def summarize(log: str) -> tuple[int, int]:
    """(passed, failed) from pytest's closing line; errors count as failures."""
    tail = log.strip().splitlines()[-1] if log.strip() else ""
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|error|errors)", tail)}
    return counts.get("passed", 0), counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)


def run_profile(profile: Profile, python: str, targets: list[str], logs: Path) -> Profile:
    env = {**os.environ, **profile.env}
    command = [*profile.prefix, python, "-m", "pytest", "-p", "no:faulthandler", "-q", "--durations=0",
               "-o", "addopts=", "--nbval", "--nbval-current-env",
               "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg"), *targets]
    start = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    profile.seconds = time.monotonic() - start
    log = done.stdout + done.stderr
    (logs / f"{profile.name}.log").write_text(log)
    profile.passed, profile.failed = summarize(done.stdout)
    if done.returncode == 0 and profile.failed == 0 and profile.passed > 0:
        profile.status = "passed"
    else:
        profile.status = "FAILED"
        profile.failed = max(profile.failed, 1)
    return profile


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", default=["book"], help="notebooks or folders (default: book)")
    parser.add_argument("--fakecpu", type=Path, default=Path(os.environ.get("FAKECPU", DEFAULT_FAKECPU)))
    parser.add_argument("--skip-this-machine", action="store_true",
                        help="leave out the this-machine profile (when `make test` has just run nbval here)")
    parser.add_argument("--only", nargs="+", metavar="PROFILE", help="run only these profiles")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--logs", type=Path, default=ROOT / "_build" / "portability")
    args = parser.parse_args(argv)

    profiles = [Profile("this-machine")]
    profiles += fakecpu_profiles(args.fakecpu)
    profiles.append(Profile("round-off", env={"PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROUNDOFF), os.environ.get("PYTHONPATH", "")]))}))
    if args.skip_this_machine:
        profiles[0].skip = "nbval ran on this machine in `make test`"
    if args.only:
        unknown = set(args.only) - {p.name for p in profiles}
        if unknown:
            parser.error(f"unknown profile(s) {sorted(unknown)}; known: {[p.name for p in profiles]}")
        profiles = [p for p in profiles if p.name in args.only]

    args.logs.mkdir(parents=True, exist_ok=True)
    runnable = [p for p in profiles if p.skip is None]
    print(f"portability: nbval over {' '.join(args.targets)} under {len(runnable)} profile(s), "
          f"{args.jobs} at a time; logs in {args.logs}", flush=True)
    for p in profiles:
        if p.skip is not None:
            p.status = "SKIPPED"
            print(f"  {p.name:22s} SKIPPED: {p.skip}", flush=True)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_profile, p, sys.executable, args.targets, args.logs) for p in runnable]
        for future in concurrent.futures.as_completed(futures):
            p = future.result()
            print(f"  {p.name:22s} {p.status}: {p.passed} cells passed, {p.failed} failed, "
                  f"{p.seconds:.0f} s", flush=True)
            if p.status == "FAILED":
                failures = [line for line in (args.logs / f"{p.name}.log").read_text().splitlines()
                            if line.startswith(("FAILED", "ERROR"))]
                for line in failures[:20]:
                    print(f"      {line}", flush=True)

    print(f"\n{'profile':22s} {'result':8s} {'cells passed':>12s} {'failed':>7s} {'wall':>7s}")
    for p in profiles:
        wall = f"{p.seconds:6.0f}s" if p.status in ("passed", "FAILED") else "      -"
        print(f"{p.name:22s} {p.status:8s} {p.passed:12d} {p.failed:7d} {wall}")
    n_pass = sum(p.status == "passed" for p in profiles)
    n_fail = sum(p.status == "FAILED" for p in profiles)
    n_skip = sum(p.status == "SKIPPED" for p in profiles)
    print(f"portability: {n_pass} passed, {n_fail} failed, {n_skip} skipped")
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
