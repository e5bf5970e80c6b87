"""Every way a reader launches a chapter: the self-installing first cell, Colab, Binder.

- The launch cell (``site/launch_cell.py``) is current in every notebook, names ``_config.yml``'s repository, and
  does nothing where ``bnhelpers`` is installed.
- *Colab*: a venv with the reader's runtime (``.venv-reader``: ``binder/requirements.txt`` and Jupyter's kernel,
  no ``bnhelpers``; ``make reader`` builds it, ``make test`` does first) runs chapter 1 top to bottom from a folder
  outside the repository, with ``BNHELPERS_SOURCE`` pointed at a wheel built from this checkout: the first cell
  installs it and prints one line, every other cell prints what the stored notebook shows.
- *Binder*: a copy of the repository, a venv from exactly ``binder/requirements.txt`` (plus the kernel that
  repo2docker's base image has), ``binder/postBuild`` run as repo2docker runs it, then nbval on chapter 9.

Each scenario gets its own venv layered on ``.venv-reader`` (a ``.pth`` file adds its site-packages), so nothing
installed here reaches ``.venv-reader`` and the 48-second install is not repeated. About 40 s in all.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "site"))
import launch_cell  # noqa: E402

READER = ROOT / ".venv-reader"
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
RUNTIME = ("tensorflow", "keras", "numpy", "sklearn", "matplotlib", "ipykernel")  # what Colab has
SANITIZE = [(r"0x[0-9a-fA-F]+", "0xADDRESS"), (r"<Figure size \d+x\d+ with \d+ Axes>", "<Figure>")]


def _site_packages(venv):
    return Path(venv) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


@pytest.fixture(scope="module")
def reader():
    if not (READER / ".installed").exists():
        pytest.fail("no reader environment in .venv-reader: run `make reader` (`make test` builds it first)")
    return _site_packages(READER)


def layered_venv(path, reader_site):
    """A new venv at ``path`` that also sees the packages of ``.venv-reader`` (a .pth line); returns its python."""
    subprocess.run([sys._base_executable, "-m", "venv", str(path)], check=True, timeout=120)
    site = _site_packages(path)
    (site / "reader_runtime.pth").write_text(f"{reader_site}\n")
    return path / "bin" / "python"


def kernelspec(folder, name, python, env=None):
    """A Jupyter kernel spec for ``python`` in ``folder/kernels/name``; put ``folder`` on JUPYTER_PATH."""
    spec = folder / "kernels" / name
    spec.mkdir(parents=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": name, "language": "python",
                                                  "env": env or {}}))
    return name


def texts(cell):
    """A cell's printed text (stdout and text/plain results, sanitized as nbval does), stderr, errors, images."""
    out = {"stdout": "", "stderr": "", "errors": [], "images": 0}
    for output in cell.get("outputs", []):
        kind = output["output_type"]
        if kind == "stream":
            out[output["name"]] += "".join(output["text"])
        elif kind == "error":
            out["errors"].append(f"{output['ename']}: {output['evalue']}")
        else:
            data = output.get("data", {})
            out["images"] += "image/png" in data
            if kind == "execute_result":
                out["stdout"] += "".join(data.get("text/plain", ""))
    for pattern, replacement in SANITIZE:
        out["stdout"] = re.sub(pattern, replacement, out["stdout"])
    return out


# --- the cell itself ---------------------------------------------------------------------------------------------

def test_every_notebook_starts_with_the_current_launch_cell():
    text = launch_cell.current_cell()
    assert launch_cell.stale(NOTEBOOKS, text) == [], "run `make launch-cells`"
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    assert f'"bnhelpers @ git+{config["url"]}@{config["branch"]}"' in text
    version = launch_cell.package_version()
    assert f"< {tuple(int(p) for p in version.split('.'))}:" in text
    import bnhelpers
    assert bnhelpers.__version__ == version, "bnhelpers.__version__ and pyproject.toml disagree"
    for path in NOTEBOOKS:
        cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        assert cells[0]["outputs"] == [], f"{path.name}: the launch cell must store no output"
        assert "hide-input" in cells[0]["metadata"]["tags"]
        assert "setup(" in "".join(cells[1]["source"]), f"{path.name}: the second code cell must call setup"
    print(f"launch cell current in {len(NOTEBOOKS)} notebooks; source {launch_cell.book_source()}")


def test_the_cell_does_nothing_where_bnhelpers_is_installed():
    done = subprocess.run([sys.executable, "-c", launch_cell.current_cell()], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "BNHELPERS_SOURCE": "/nonexistent/bnhelpers.whl"})
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_render_and_config_errors(tmp_path):
    with pytest.raises(ValueError, match="no quotes or backslashes"):
        launch_cell.render('bnhelpers @ "x"', "0.2.0")
    (tmp_path / "_config.yml").write_text("repository:\n  url: git@github.com:org/repo\n")
    with pytest.raises(ValueError, match="repository's https address, got 'git@github.com:org/repo'"):
        launch_cell.book_source(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nversion = "0.3.0rc1"\n')
    with pytest.raises(ValueError, match="three integers like 0.2.0 .* got '0.3.0rc1'"):
        launch_cell.package_version(tmp_path)


def test_write_inserts_then_updates_the_cell(tmp_path):
    path = tmp_path / "chapter.ipynb"
    shutil.copy(NOTEBOOKS[0], path)
    nb = json.loads(path.read_text())
    nb["cells"] = [c for c in nb["cells"] if not launch_cell.is_launch_cell(c)]
    path.write_text(json.dumps(nb))
    assert launch_cell.stale([path], "x = 1") == [path]
    assert launch_cell.write(path, "x = 1") is True
    assert launch_cell.write(path, "x = 1") is False
    assert launch_cell.stale([path], "x = 1") == []
    code = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    assert "".join(code[0]["source"]) == "x = 1" and "setup(" in "".join(code[1]["source"])
    assert launch_cell.write(path, "x = 2") is True
    assert len([c for c in json.loads(path.read_text())["cells"] if launch_cell.is_launch_cell(c)]) == 1


# --- Colab: a fresh environment without bnhelpers ----------------------------------------------------------------

@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(ROOT)], check=True, timeout=300, cwd=out)
    (found,) = out.glob("bnhelpers-*.whl")
    return found


def test_colab_chapter_1_installs_bnhelpers_and_prints_what_the_book_shows(reader, wheel, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    python = layered_venv(tmp_path / "venv", reader)
    probe = "import importlib.util as u; print([m for m in MODULES if u.find_spec(m) is None])"
    missing = subprocess.run([str(python), "-c", probe.replace("MODULES", repr(RUNTIME + ("bnhelpers",)))],
                             capture_output=True, text=True, timeout=60, cwd=tmp_path, check=True).stdout
    assert missing == "['bnhelpers']\n", f"the fresh environment must have {RUNTIME}, not bnhelpers: {missing}"
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    name = kernelspec(tmp_path / "jupyter", "bnbook-colab", python, {"BNHELPERS_SOURCE": str(wheel)})
    work = tmp_path / "reader-folder"  # outside the repository: nothing of the checkout is importable
    work.mkdir()
    stored = json.loads(NOTEBOOKS[0].read_text())
    nb = nbformat.read(NOTEBOOKS[0], as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import bnhelpers; print(bnhelpers.__file__)"))
    NotebookClient(nb, timeout=300, kernel_name=name, resources={"metadata": {"path": str(work)}}).execute()

    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    first = texts(code[0])
    assert first["stdout"] == f"Installed bnhelpers from {wheel} (found: none).\n"
    assert (first["stderr"], first["errors"]) == ("", [])
    assert texts(code[-1])["stdout"].startswith(str(_site_packages(tmp_path / "venv") / "bnhelpers"))
    compared = images = 0
    for fresh, old in zip(code[1:-1], [c for c in stored["cells"] if c["cell_type"] == "code"][1:], strict=True):
        got, want = texts(fresh), texts(old)
        assert (got["stderr"], got["errors"]) == ("", []), "".join(fresh["source"])[:80]
        assert got == want, f"cell differs from the stored notebook: {''.join(fresh['source'])[:80]}"
        compared += 1
        images += got["images"]
    print(f"Colab-like run of {NOTEBOOKS[0].name} from {work}: 1 install line, {compared} cells and {images} "
          f"figures as stored")

    # Older than the book needs: the same cell reinstalls (here the same wheel) and says what it found.
    older = launch_cell.render(launch_cell.book_source(), "99.0.0")
    done = subprocess.run([str(python), "-c", older], capture_output=True, text=True, timeout=300, cwd=work,
                          env={**os.environ, "BNHELPERS_SOURCE": str(wheel)})
    assert (done.returncode, done.stderr) == (0, ""), done.stderr[-2000:]
    assert done.stdout == f"Installed bnhelpers from {wheel} (found: {launch_cell.package_version()}).\n"


# --- Binder: binder/requirements.txt, then binder/postBuild -----------------------------------------------------

def test_binder_files_install_the_runtime_pins_and_bnhelpers_not_the_tooling():
    runtime = {re.split("==", line)[0].lower().replace("_", "-") for line in
               (ROOT / "binder" / "requirements.txt").read_text().splitlines() if line and line[0] != "#"}
    assert {"tensorflow", "keras", "tf-keras", "numpy", "scikit-learn", "matplotlib"} <= runtime
    tooling = {"jupyter-book", "nbval", "pytest", "playwright", "linkchecker", "hypothesis", "sphinx"}
    assert runtime & tooling == set(), "site, browser and test tools do not belong in the reader's environment"
    assert "-r binder/requirements.txt" in (ROOT / "requirements.txt").read_text().splitlines()
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"
    assert os.access(ROOT / "binder" / "postBuild", os.X_OK)
    print(f"binder/requirements.txt: {len(runtime)} exact pins, none of {sorted(tooling)}")


def test_binder_environment_runs_a_chapter_under_nbval(reader, tmp_path, monkeypatch):
    repo = tmp_path / "repo"  # repo2docker builds from a copy of the repository
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".venv-reader", "_build", "node_modules", "static", "dist", "build", "__pycache__",
        "*.egg-info", ".hypothesis", ".pytest_cache"))
    python = layered_venv(tmp_path / "venv", reader)
    env = {**os.environ, "PATH": f"{python.parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    subprocess.run([str(repo / "binder" / "postBuild")], check=True, timeout=300, env=env, cwd=tmp_path)
    where = subprocess.run([str(python), "-c", "import bnhelpers; print(bnhelpers.__file__)"], check=True,
                           capture_output=True, text=True, timeout=60, cwd=tmp_path).stdout
    assert where.startswith(str(_site_packages(tmp_path / "venv"))), where
    assert not (repo / "build").exists() and not list(repo.glob("*.egg-info")), "postBuild leaves no build files"

    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    name = kernelspec(tmp_path / "jupyter", "bnbook-binder", python, {"BNHELPERS_SOURCE": "/nonexistent.whl"})
    chapter = "book/09_conventions.ipynb"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-o", "addopts=", "-p", "no:cacheprovider", "-q", "--nbval",
         f"--nbval-kernel-name={name}", "--nbval-sanitize-with", "tests/nbval_sanitize.cfg", chapter],
        capture_output=True, text=True, timeout=400, cwd=repo, env={**os.environ, "JUPYTER_PATH": str(tmp_path / "jupyter")})
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 0, done.stdout[-3000:]
    assert re.search(r"\d+ passed", summary) and "failed" not in summary, summary
    print(f"Binder-like environment: postBuild installed bnhelpers; nbval {chapter}: {summary}")
