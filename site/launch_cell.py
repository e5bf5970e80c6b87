"""The first code cell of every notebook: install ``bnhelpers`` where it is missing.

A chapter opened from the site's launch button (Colab, Binder) or downloaded into a fresh Python starts without
``bnhelpers``, so ``from bnhelpers import setup`` would raise ``ImportError``. Each notebook therefore starts with
the cell that :func:`render` writes from :data:`TEMPLATE`, the one place this logic lives:

- ``bnhelpers`` installed at the version the book needs or newer (``make lab``, nbval, Binder after
  ``binder/postBuild``): the cell imports nothing of the book and prints nothing, so stored outputs stay as they are;
- missing or older: it runs ``pip install --quiet`` on one source, then prints one line saying what it installed.

The source is the book's repository, ``bnhelpers @ git+<repository.url>@<repository.branch>`` from ``_config.yml``,
unless the environment variable ``BNHELPERS_SOURCE`` names another (tests point it at a wheel from ``make dist``).
The version is the package's own (``pyproject.toml``). Both are written into the cell, which needs only the standard
library: the notebook may run where neither this file nor ``_config.yml`` exists.

Run after changing ``repository`` in ``_config.yml`` or the package's version (``make notebooks`` runs it too)::

    python site/launch_cell.py --write     # rewrite the first cell of every notebook in book/
    python site/launch_cell.py --check     # exit 1 and name the notebooks whose first cell is not the current one

``tests/test_launch.py`` checks that every notebook's cell is current and runs chapter 1 in a venv without
``bnhelpers``; ``tests/test_binder.py`` runs a notebook the way Binder would.
"""

import argparse
import json
import sys
import tomllib
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCE_VARIABLE = "BNHELPERS_SOURCE"
TAG = "bnbook-launch"  # marks the cell, so a rewrite finds it

TEMPLATE = """\
# Colab or a fresh Python: install bnhelpers, the book's helper package, if it is missing or older than {version}
# (one printed line says so). Where it is installed (`make lab`, Binder), this cell does nothing.
import importlib, importlib.metadata, os, subprocess, sys
try:
    found = importlib.metadata.version("bnhelpers")
except importlib.metadata.PackageNotFoundError:
    found = None
if found is None or tuple(int(part) for part in found.split(".")[:3]) < {version_tuple}:
    source = os.environ.get("{variable}", "{source}")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--root-user-action=ignore", source], check=True)
    importlib.invalidate_caches()
    print(f"Installed bnhelpers from {{source}} (found: {{found or 'none'}}).")"""


def package_version(root=ROOT):
    """``bnhelpers``'s version as ``pyproject.toml`` states it, e.g. ``"0.2.0"`` (three integers)."""
    version = tomllib.loads((Path(root) / "pyproject.toml").read_text())["project"]["version"]
    parts = version.split(".")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        raise ValueError(f"pyproject.toml's version must be three integers like 0.2.0 (the cell compares them), "
                         f"got {version!r}")
    return version


def book_source(root=ROOT):
    """The pip requirement that installs ``bnhelpers`` from the repository named in ``_config.yml``."""
    config = yaml.safe_load((Path(root) / "_config.yml").read_text())
    repository = config.get("repository") or {}
    url, branch = repository.get("url"), repository.get("branch", "main")
    if not url or not url.startswith("https://"):
        raise ValueError(f"_config.yml: repository.url must be the repository's https address, got {url!r}")
    return f"bnhelpers @ git+{url.rstrip('/')}@{branch}"


def render(source, version):
    """The cell's source for a pip requirement ``source`` and a minimum ``version`` ("X.Y.Z")."""
    if '"' in source or "\\" in source:
        raise ValueError(f"the source is written into a Python string: no quotes or backslashes, got {source!r}")
    version_tuple = tuple(int(part) for part in version.split("."))
    return TEMPLATE.format(version=version, version_tuple=version_tuple, variable=SOURCE_VARIABLE, source=source)


def current_cell(root=ROOT):
    return render(book_source(root), package_version(root))


def first_code_cell(notebook):
    return next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")


def is_launch_cell(cell):
    return TAG in cell.get("metadata", {}).get("tags", [])


def write(path, text):
    """Make ``text`` the launch cell of the notebook at ``path`` (inserted before the first code cell if it has
    none). Returns True if the file changed."""
    notebook = json.loads(Path(path).read_text())
    cell = first_code_cell(notebook)
    if not is_launch_cell(cell):
        cell = {"cell_type": "code", "execution_count": None, "id": uuid.uuid4().hex[:8],
                "metadata": {"tags": [TAG, "hide-input"]}, "outputs": [], "source": []}
        notebook["cells"].insert(notebook["cells"].index(first_code_cell(notebook)), cell)
    lines = text.splitlines(keepends=True)
    if cell["source"] == lines:
        return False
    cell["source"] = lines
    Path(path).write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    return True


def stale(paths, text):
    """The notebooks among ``paths`` whose first code cell is not the launch cell ``text``."""
    out = []
    for path in paths:
        cell = first_code_cell(json.loads(Path(path).read_text()))
        if not is_launch_cell(cell) or "".join(cell["source"]) != text:
            out.append(Path(path))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the launch cell of every notebook")
    parser.add_argument("--check", action="store_true", help="exit 1 if a notebook's launch cell is not current")
    args = parser.parse_args(argv)
    if args.write == args.check:
        parser.error("give exactly one of --write, --check")
    notebooks = sorted((ROOT / "book").glob("*.ipynb"))
    text = current_cell()
    if args.write:
        changed = [path.name for path in notebooks if write(path, text)]
        print(f"launch cell: {len(changed)} of {len(notebooks)} notebooks rewritten {changed if changed else ''}")
        return 0
    old = stale(notebooks, text)
    if old:
        print("launch cell not current in: " + ", ".join(p.name for p in old) + " (run `make launch-cells`)")
        return 1
    print(f"launch cell current in all {len(notebooks)} notebooks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
