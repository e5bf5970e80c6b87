"""``make lab`` (the README's local JupyterLab) starts, serves the book and runs every notebook's set-up cells.

JupyterLab is started as a reader would, ``make lab LAB_ARGS="..."``, headless on 127.0.0.1 at a free port with a
random token, in its own process group, with HOME, JUPYTER_*, IPYTHONDIR, MPLCONFIGDIR and KERAS_HOME in the test's
temporary folder and no update or news checks. Over the REST API ``/lab`` answers 200 and ``/api/contents`` lists
exactly the notebooks of ``_toc.yml`` (and refuses a request without the token). Two kernels at a time, each notebook
gets a session (``POST /api/sessions``, kernel ``python3``, cwd ``book/``) and, over the kernel's WebSocket, runs its
code cells up to and including the first with stored outputs (read fresh from disk): no error, nothing on stderr,
stdout equal to the stored text. A control ``raise ValueError`` must come back as an error. ``POST /api/shutdown``
then ends it: make exits 0, no process of its group and no kernel is left, the port is closed.
3 tests, 55-85 s on the 2-core machine (server up in 3 s; each kernel 5-18 s, mostly importing TensorFlow).
"""

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
import websocket

from book_toc import toc_files

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = sorted(ROOT / f"{f}.ipynb" for f in toc_files() if (ROOT / f"{f}.ipynb").exists())
CELL_TIMEOUT = 180  # s, one cell (imports TensorFlow)
MAKE_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}  # not a sub-make of make test


def _procs():
    """pid -> (ppid, pgid, start time) of every live process (zombies, dead but not yet reaped, left out)."""
    procs = {}
    for d in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                procs[int(d.name)] = int(fields[1]), int(fields[2]), int(fields[19])
    return procs


class Lab:
    def __init__(self, tmp):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.token, self.url, self.log = secrets.token_hex(16), f"http://127.0.0.1:{self.port}", tmp / "lab.log"
        self.seen = {}  # pid -> (start time, pgid) of every process make started, kernels included
        env = {k: v for k, v in MAKE_ENV.items() if not k.startswith(("JUPYTER", "JPY"))}
        for var in ("HOME", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR",
                    "MPLCONFIGDIR", "KERAS_HOME"):
            env[var] = str(tmp / var.lower())
            (tmp / var.lower()).mkdir()
        args = ["--no-browser", "--ip=127.0.0.1", f"--port={self.port}", "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={self.token}", "--ServerApp.open_browser=False",
                "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--LabApp.extension_manager=readonly", "--ServerApp.shutdown_no_activity_timeout=900"]
        args += ["--allow-root"] if os.geteuid() == 0 else []  # Jupyter refuses root otherwise (containers)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(["make", "--no-print-directory", "lab", "LAB_ARGS=" + " ".join(args)],
                                         cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.pgid = self.proc.pid  # make leads a new session and process group

    def track(self):
        """Remembers every live descendant of make (kernels run in sessions of their own)."""
        procs = _procs()
        for pid, (_, pgid, start) in procs.items():
            p = pid
            for _ in range(50):  # up the parent chain
                if p == self.proc.pid:
                    self.seen[pid] = (start, pgid)
                p = procs.get(p, (0,))[0]

    def api(self, method, path, **kw):
        return requests.request(method, self.url + path, headers={"Authorization": f"token {self.token}"},
                                timeout=30, **kw)

    def leftovers(self):
        procs = _procs()
        return sorted({p for p, s in procs.items() if s[1] == self.pgid}
                      | {p for p, (t, _) in self.seen.items() if p in procs and procs[p][2] == t})


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    stamp = subprocess.run(["make", "-q", ".venv/.installed"], cwd=ROOT, env=MAKE_ENV, capture_output=True,
                           text=True, timeout=30)
    assert stamp.returncode == 0, f".venv is out of date (make lab would reinstall it): run `make venv` {stamp.stderr}"
    server, started = Lab(tmp_path_factory.mktemp("lab")), time.monotonic()
    try:
        while True:
            with contextlib.suppress(requests.ConnectionError):
                if server.api("GET", "/api/status").status_code == 200:
                    break
            assert server.proc.poll() is None and time.monotonic() < started + 90, (
                f"JupyterLab did not answer /api/status within 90 s (make: {server.proc.poll()}); its log:\n"
                + server.log.read_text(errors="replace")[-4000:])
            time.sleep(0.5)
        print(f"\nJupyterLab up on port {server.port} in {time.monotonic() - started:.1f} s")
        server.track()
        yield server
    finally:  # shut down through the API, then kill what is left: only processes this test started, by id
        with contextlib.suppress(requests.RequestException, subprocess.TimeoutExpired):
            if server.proc.poll() is None:
                server.api("POST", "/api/shutdown")
                server.proc.wait(timeout=30)
        for pid in server.leftovers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
        for _ in range(100):  # SIGKILL takes effect asynchronously
            if not server.leftovers():
                break
            time.sleep(0.1)
        assert not server.leftovers(), f"could not stop processes {server.leftovers()}"


def _execute(ws, session, code):
    """Runs ``code`` in the kernel behind ``ws``; returns (stdout, stderr, errors, reply status)."""
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({"header": {"msg_id": msg_id, "username": "test", "session": session, "version": "5.3",
                                   "msg_type": "execute_request", "date": datetime.now(timezone.utc).isoformat()},
                        "parent_header": {}, "metadata": {}, "channel": "shell",
                        "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                                    "allow_stdin": False, "stop_on_error": True}}))
    out, err, errors, status, idle = [], [], [], None, False
    deadline = time.monotonic() + CELL_TIMEOUT
    while status is None or not idle:
        ws.settimeout(max(0.1, deadline - time.monotonic()))
        msg = json.loads(ws.recv())  # raises WebSocketTimeoutException past the deadline
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            (out if content["name"] == "stdout" else err).append(content["text"])
        elif kind == "error":
            errors.append(f"{content['ename']}: {content['evalue']}")
        elif kind == "execute_reply":
            status = content["status"]
        elif kind == "status":
            idle = content["execution_state"] == "idle"
    return "".join(out), "".join(err), errors, status


def _cells_to_run(path):
    """(source, stored stdout) of the code cells up to and including the first with stored outputs."""
    code = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    last = next((i for i, c in enumerate(code) if c["outputs"]), None)
    assert last is not None, f"{path.name}: no code cell has stored outputs"
    return [("".join(c["source"]), "".join("".join(o["text"]) for o in c["outputs"] if o.get("name") == "stdout"))
            for c in code[:last + 1]]


def _run_notebook(lab, path, control=False):
    name, started = path.name, time.monotonic()
    r = lab.api("POST", "/api/sessions", json={"path": name, "name": name, "type": "notebook",
                                                "kernel": {"name": "python3"}})
    assert r.status_code == 201, f"{name}: POST /api/sessions answered {r.status_code}: {r.text[:500]}"
    session = r.json()
    try:
        lab.track()
        url = f"ws://127.0.0.1:{lab.port}/api/kernels/{session['kernel']['id']}/channels?session_id={session['id']}"
        with contextlib.closing(websocket.create_connection(url, header=[f"Authorization: token {lab.token}"],
                                                            timeout=60)) as ws:
            for i, (code, stored) in enumerate(_cells_to_run(path)):
                out, err, errors, status = _execute(ws, session["id"], code)
                where = f"{name}, code cell {i + 1}"
                assert status == "ok" and not errors, f"{where} failed ({status}): {errors}\nstdout: {out}"
                assert not err, f"{where} wrote on stderr:\n{err}"
                assert out == stored, f"{where} printed\n{out!r}\ninstead of the stored\n{stored!r}"
            out = _execute(ws, session["id"], "import os, sys; print(os.getcwd()); print(sys.prefix)")[0]
            assert out.split() == [str(BOOK), str(ROOT / ".venv")], f"{name}: kernel cwd, prefix: {out.split()}"
            if control:  # the collector does see failures
                out, err, errors, status = _execute(ws, session["id"], "raise ValueError('control 14')")
                assert status == "error" and errors == ["ValueError: control 14"], (status, errors)
    finally:
        gone = lab.api("DELETE", f"/api/sessions/{session['id']}").status_code
    assert gone == 204, f"{name}: DELETE /api/sessions/... answered {gone}"
    return time.monotonic() - started


def test_lab_serves_the_book(lab):
    page = lab.api("GET", "/lab")
    assert page.status_code == 200 and "JupyterLab" in page.text, f"/lab answered {page.status_code}"
    listed = {e["name"] for e in lab.api("GET", "/api/contents").json()["content"] if e["type"] == "notebook"}
    expected = {p.name for p in NOTEBOOKS}
    assert listed == expected, f"/api/contents: missing {expected - listed}, unexpected {listed - expected}"
    anonymous = requests.get(lab.url + "/api/contents", timeout=30)
    assert anonymous.status_code == 403, f"without the token /api/contents answered {anonymous.status_code}"
    print(f"/lab {len(page.text)} bytes; {len(listed)} notebooks listed")


def test_every_notebook_runs_its_setup_cells(lab):
    def attempt(path):  # seconds taken, or what went wrong: every failing notebook is reported, not just the first
        try:
            return _run_notebook(lab, path, control=path == NOTEBOOKS[0])
        except Exception as e:  # an assertion, or a timeout / closed socket (then say which notebook)
            return str(e) if isinstance(e, AssertionError) else f"{path.name}: {type(e).__name__}: {e}"

    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:  # two kernels at a time: each imports TensorFlow
        results = list(pool.map(attempt, NOTEBOOKS))
    failures = [r for r in results if isinstance(r, str)]
    assert not failures, f"{len(failures)} of {len(NOTEBOOKS)} notebooks failed:\n\n" + "\n\n".join(failures)
    assert lab.api("GET", "/api/sessions").json() == [], "sessions left after the run"
    print(f"{len(results)} notebooks in {time.monotonic() - started:.1f} s (per kernel {min(results):.1f}"
          f"-{max(results):.1f} s); {len(lab.seen)} server processes seen")


def test_shutdown_leaves_nothing_running(lab):
    kernels = sum(pgid != lab.pgid for _, pgid in lab.seen.values())  # kernels run in sessions of their own
    assert kernels >= len(NOTEBOOKS), f"only {kernels} kernel processes were seen, for {len(NOTEBOOKS)} notebooks"
    lab.api("POST", "/api/shutdown")
    status = lab.proc.wait(timeout=30)
    assert status == 0, f"make lab exited {status}; log:\n" + lab.log.read_text(errors="replace")[-3000:]
    left = lab.leftovers()
    assert not left, f"still running after shutdown: {left}"
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", lab.port)) != 0, f"port {lab.port} still open"
    print(f"shut down: make exited 0, {len(lab.seen)} processes gone, port {lab.port} closed")
