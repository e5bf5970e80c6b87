"""Several worker processes on one machine with ``tf.distribute.MultiWorkerMirroredStrategy``.

A multi-worker cluster is a set of processes, each told the whole cluster and its own place in
it by the environment variable ``TF_CONFIG``::

    {"cluster": {"worker": ["host0:port", "host1:port"]}, "task": {"type": "worker", "index": 0}}

Every worker runs the same program; ``MultiWorkerMirroredStrategy()`` reads ``TF_CONFIG``,
starts a gRPC server on its own address and waits until every worker has joined (worker 0
leads). From then on each worker is one replica, and ``BatchNormalization(synchronized=True)``
all-reduces its sums, sums of squares and counts over all workers, as ``MirroredStrategy``
does over the devices of one process (:mod:`bnhelpers.training.distributed`).

:func:`run_workers` plays the cluster on ``127.0.0.1``: it picks free ports, starts ``n``
fresh interpreters running the same ``code`` (each with its own ``TF_CONFIG``), collects what
each one passes to :func:`report`, and ends every process it started, by process group, when
the workers finish, when one fails (:class:`WorkerError` with its exit code and the end of its
stderr) and on timeout (:class:`WorkerError` naming the workers that never joined the cluster
or never finished); :func:`alive` checks that none of their process ids is left.

Inside a worker: the strategy must be created before TensorFlow runs its first operation
("Collective ops must be configured at program startup"), and ``bnhelpers.setup`` runs one, so a
worker starts with :func:`worker_setup` (TensorFlow imported quietly, the strategy created by
:func:`worker_strategy`, which tells the parent it has joined, then ``setup(seed)``);
:func:`task_index` is the worker's index, :func:`report` hands its result back, and
:func:`collective_ops` counts the all-reduces in a traced step.

Chapters: 8.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["WorkerResult", "WorkerError", "free_ports", "cluster_spec", "tf_config", "run_workers", "alive",
           "task_index", "collective_ops", "worker_setup", "worker_strategy", "report", "RESULT_VARIABLE",
           "JOINED_VARIABLE"]

RESULT_VARIABLE = "BNHELPERS_WORKER_RESULT"   # where a worker's report() writes its JSON
JOINED_VARIABLE = "BNHELPERS_WORKER_JOINED"   # the file worker_strategy() creates once the cluster is up
_LOCAL = "127.0.0.1"


@dataclass(frozen=True)
class WorkerResult:
    """One worker of :func:`run_workers`: its ``index`` in the cluster, process ``pid``,
    ``result`` (what it passed to :func:`report`, decoded from JSON; ``None`` if it reported
    nothing), its ``stdout`` and ``stderr`` as text, and its ``tf_config`` (the JSON it was given)."""

    index: int
    pid: int
    result: object
    stdout: str
    stderr: str
    tf_config: str


class WorkerError(RuntimeError):
    """A worker failed, never joined the cluster or did not finish in time; every worker has been ended.

    ``pids``: the process ids of the workers (all ended by the time this is raised); ``workers``:
    the indices of the workers the message names (failed, absent or unfinished)."""

    def __init__(self, message: str, pids=(), workers=()):
        super().__init__(message)
        self.pids, self.workers = list(pids), list(workers)


def free_ports(n: int, host: str = _LOCAL) -> list[int]:
    """``n`` distinct TCP ports that are free on ``host`` now (the kernel picks them)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    sockets = []
    try:
        for _ in range(n):  # all open at once, so the kernel cannot hand out the same port twice
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def cluster_spec(addresses) -> dict:
    """``{"worker": [...]}`` from worker addresses ``"host:port"`` (or ports, meaning 127.0.0.1)."""
    workers = [f"{_LOCAL}:{a}" if isinstance(a, int) else str(a) for a in addresses]
    if not workers:
        raise ValueError("a cluster needs at least one worker")
    for w in workers:
        host, _, port = w.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"worker address {w!r} is not host:port")
    if len(set(workers)) != len(workers):
        raise ValueError(f"worker addresses repeat: {workers}")
    return {"worker": workers}


def tf_config(cluster: dict, index: int) -> str:
    """The ``TF_CONFIG`` value (JSON text) for worker ``index`` of ``cluster``."""
    n = len(cluster.get("worker", []))
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
        raise ValueError(f"index must be an int in [0, {n}), got {index!r}")
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _end(procs) -> None:
    """SIGTERM each worker's process group, then SIGKILL what is left after 5 s; reap them all."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        alive = [p for p in procs if p.poll() is None]
        if not alive:
            break
        for p in alive:
            try:
                os.killpg(p.pid, sig)  # the group this helper created for the worker (start_new_session)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        for p in alive:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
    for p in procs:
        try:  # children the worker itself left in its group
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def run_workers(code: str, n_workers: int = 2, *, timeout: float = 120.0, join_timeout: float | None = None,
                env: dict | None = None, args=(), poll: float = 0.05) -> list[WorkerResult]:
    """Run ``code`` in ``n_workers`` fresh interpreters forming one cluster on 127.0.0.1.

    Worker ``i`` runs ``sys.executable -c code *args`` with ``TF_CONFIG`` naming it worker ``i``
    of the cluster (ports from :func:`free_ports`). ``code`` should call ``bnhelpers.setup``
    first, :func:`worker_strategy` to join, and :func:`report` once with a JSON-serializable
    result. Returns one :class:`WorkerResult` per worker, in index order.

    Raises :class:`WorkerError` (after ending every worker) if a worker exits non-zero (its
    exit code and the end of its stderr), if not every worker has joined after ``join_timeout``
    seconds (default: ``timeout``), or if they have not all finished after ``timeout`` seconds.
    """
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ValueError(f"n_workers must be a positive int, got {n_workers!r}")
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, got {timeout!r}")
    join_timeout = timeout if join_timeout is None else join_timeout
    cluster = cluster_spec(free_ports(n_workers))
    base = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "TF_CONFIG")}
    base["no_proxy"] = base["NO_PROXY"] = ",".join(filter(None, [_LOCAL, "localhost", base.get("no_proxy")]))
    base.update(env or {})
    procs, files = [], []
    with tempfile.TemporaryDirectory(prefix="bnhelpers-workers-") as tmp:
        tmp = Path(tmp)
        try:
            for i in range(n_workers):
                paths = {name: tmp / f"{name}{i}" for name in ("result", "joined", "stdout", "stderr")}
                child = dict(base, TF_CONFIG=tf_config(cluster, i), **{RESULT_VARIABLE: str(paths["result"]),
                                                                        JOINED_VARIABLE: str(paths["joined"])})
                with open(paths["stdout"], "w") as out, open(paths["stderr"], "w") as err:
                    procs.append(subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=out,
                                                  stderr=err, stdin=subprocess.DEVNULL, env=child,
                                                  start_new_session=True))
                files.append(paths)
            start = time.monotonic()
            while True:
                codes = [p.poll() for p in procs]
                failed = [i for i, c in enumerate(codes) if c not in (None, 0)]
                if failed:
                    i = failed[0]
                    raise WorkerError(f"worker {i} of {n_workers} exited with code {codes[i]}; the others were "
                                      f"ended. End of its stderr:\n{_tail(files[i]['stderr'].read_text())}",
                                      [p.pid for p in procs], [i])
                if all(c == 0 for c in codes):
                    break
                elapsed = time.monotonic() - start
                waiting = [i for i in range(n_workers) if codes[i] is None and not files[i]["joined"].exists()]
                if waiting and elapsed > join_timeout:
                    absent = [i for i in waiting if not Path(f"{files[i]['joined']}.arrived").exists()] or waiting
                    raise WorkerError(
                        f"worker(s) {absent} of {n_workers} never joined the cluster within {join_timeout:g} s; "
                        "the others wait for every address in TF_CONFIG['cluster'], so all were ended. Check "
                        "that every worker runs with the same cluster, its own task index and a reachable "
                        f"port. End of worker {absent[0]}'s stderr:\n{_tail(files[absent[0]]['stderr'].read_text())}",
                        [p.pid for p in procs], absent)
                if elapsed > timeout:
                    running = [i for i, c in enumerate(codes) if c is None]
                    raise WorkerError(f"worker(s) {running} of {n_workers} did not finish within {timeout:g} s; "
                                      "all were ended", [p.pid for p in procs], running)
                time.sleep(poll)
        finally:
            _end(procs)
        results = []
        for i, (p, paths) in enumerate(zip(procs, files)):
            text = paths["result"].read_text() if paths["result"].exists() else None
            results.append(WorkerResult(i, p.pid, None if text is None else json.loads(text),
                                        paths["stdout"].read_text(), paths["stderr"].read_text(),
                                        tf_config(cluster, i)))
    return results


def alive(pids) -> list[int]:
    """The process ids among ``pids`` that still exist (after :func:`run_workers`: none)."""
    found = []
    for pid in pids:
        try:
            os.kill(pid, 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            continue
        except PermissionError:
            pass
        found.append(pid)
    return found


# ----- inside a worker -----

def task_index() -> int:
    """This worker's index, from ``TF_CONFIG`` (``KeyError`` outside a worker)."""
    return int(json.loads(os.environ["TF_CONFIG"])["task"]["index"])


# What setup() sets before TensorFlow's import (bnhelpers.environment); a worker must import TensorFlow and
# create its strategy before the first op, which setup() runs, so worker_setup() sets them itself.
_SETUP_ENVIRONMENT = {"TF_USE_LEGACY_KERAS": "0", "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow",
                      "TF_ENABLE_ONEDNN_OPTS": "0", "TENSORFLOW_USE_CUSTOM_CONTRACTION_KERNEL": "0"}


def worker_setup(seed: int = 0, **strategy_kwargs):
    """A worker's first call, instead of ``setup(seed)``: returns ``(strategy, rng)``.

    ``MultiWorkerMirroredStrategy`` must be created before TensorFlow runs its first op
    ("Collective ops must be configured at program startup"), and ``setup`` runs one. So this
    imports TensorFlow quietly with ``setup``'s settings (one intra-op thread), creates the
    strategy with :func:`worker_strategy` (which waits for every worker), and then calls
    ``setup(seed)`` for the seeds, op determinism and the rest.
    """
    from ..environment import setup, silenced_stderr

    if "tensorflow" in sys.modules:
        raise RuntimeError("worker_setup() must run before TensorFlow is imported: call it first in the worker")
    _mark(".arrived")
    for name, value in _SETUP_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    with silenced_stderr():
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
    strategy = worker_strategy(**strategy_kwargs)
    return strategy, setup(seed)


def worker_strategy(**kwargs):
    """``tf.distribute.MultiWorkerMirroredStrategy(**kwargs)``: returns once every worker has joined,
    and tells :func:`run_workers` so (``kwargs``: e.g. ``communication_options``)."""
    import tensorflow as tf

    _mark(".arrived")  # started: from here on it waits for the others
    strategy = tf.distribute.MultiWorkerMirroredStrategy(**kwargs)
    _mark("")
    return strategy


def _mark(suffix: str) -> None:
    path = os.environ.get(JOINED_VARIABLE)
    if path:
        Path(path + suffix).touch()


def collective_ops(concrete_function) -> dict[str, int]:
    """``{op type: count}`` of the collective (cross-worker) ops in a traced ``tf.function``'s graph,
    including the functions it calls (``strategy.run`` bodies); ``concrete_function``: from
    ``step.get_concrete_function(...)``."""
    counts: dict[str, int] = {}
    graph = concrete_function.graph
    types = [op.type for op in graph.get_operations()]
    for function in graph.as_graph_def().library.function:
        types += [node.op for node in function.node_def]
    for op_type in types:
        if op_type.startswith("Collective"):
            counts[op_type] = counts.get(op_type, 0) + 1
    return dict(sorted(counts.items()))


def report(result) -> None:
    """Hand ``result`` (JSON-serializable) to :func:`run_workers`; outside it, print it as JSON."""
    text = json.dumps(result)
    path = os.environ.get(RESULT_VARIABLE)
    if path:
        tmp = Path(path + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    else:
        print(text)
