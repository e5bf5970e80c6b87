"""The package map: every module says which chapters import it, the README agrees, and the layers stay in order.

Each module docstring of ``bnhelpers`` ends with a line ``Chapters: 1, 7, 8.`` (or ``Chapters: none directly.``)
naming the chapters whose notebooks import it; ``bnhelpers/README.md`` lists every module with the same chapters.
The subpackages are layers (``core`` -> ``layers`` -> ``models`` -> ``tools`` -> ``training`` -> ``reporting``,
``speed``); a module imports only from its own layer and the ones below.
"""

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "bnhelpers"
LAYERS = {"environment": 0, "data": 0, "core": 0, "layers": 1, "models": 2, "tools": 3, "training": 4,
          "reporting": 5, "speed": 5}
# names the package root re-exports, and the module that defines them
ROOT_NAMES = {"setup": "bnhelpers.environment", "BatchSizeOneWarning": "bnhelpers.core.validation"}


def modules() -> dict[str, Path]:
    return {".".join(p.with_suffix("").relative_to(ROOT).parts): p
            for p in sorted(PACKAGE.rglob("*.py")) if p.name != "__init__.py"}


def imported(tree: ast.AST, package: str) -> set[str]:
    """The bnhelpers modules a parsed source imports (``from .x import y`` resolved against ``package``)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if not base.startswith("bnhelpers"):
                continue
            for alias in node.names:
                if base == "bnhelpers" and alias.name in ROOT_NAMES:
                    found.add(ROOT_NAMES[alias.name])
                elif f"{base}.{alias.name}" in modules():
                    found.add(f"{base}.{alias.name}")
                else:
                    found.add(base)
    return found


def chapters_importing() -> dict[str, set[int]]:
    use: dict[str, set[int]] = {}
    for notebook in sorted((ROOT / "book").glob("*.ipynb")):
        chapter = int(notebook.name[:2])
        for cell in json.loads(notebook.read_text())["cells"]:
            if cell["cell_type"] == "code":
                source = "".join(cell["source"])
                try:
                    tree = ast.parse(source)
                except SyntaxError:  # cells with IPython magics
                    continue
                for module in imported(tree, "bnhelpers"):
                    use.setdefault(module, set()).add(chapter)
    return use


def declared(text: str) -> set[int] | None:
    match = re.search(r"^Chapters: (.*)\.$", text, re.M)
    if match is None:
        return None
    return set() if match.group(1) == "none directly" else {int(c) for c in match.group(1).split(", ")}


@pytest.mark.parametrize("module", sorted(modules()))
def test_docstring_names_the_chapters_that_import_the_module(module):
    doc = ast.get_docstring(ast.parse(modules()[module].read_text())) or ""
    claimed = declared(doc)
    assert claimed is not None, f"{module}: the docstring needs a closing line 'Chapters: ...' "
    assert claimed == chapters_importing().get(module, set()), f"{module}: docstring says {sorted(claimed)}"


def test_every_name_a_notebook_imports_comes_from_an_existing_module():
    known = set(modules()) | {"bnhelpers", *[f"bnhelpers.{d.name}" for d in PACKAGE.iterdir() if d.is_dir()]}
    unknown = set(chapters_importing()) - known
    assert not unknown, f"notebooks import from {sorted(unknown)}"


def test_readme_lists_every_module_with_its_chapters():
    rows = {}
    for line in (PACKAGE / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`bnhelpers."):
            rows[cells[0].strip("`")] = cells[2]
    assert set(rows) == set(modules()), f"README rows differ: {sorted(set(rows) ^ set(modules()))}"
    for module, chapters in rows.items():
        expected = declared(f"Chapters: {chapters}.")
        doc = ast.get_docstring(ast.parse(modules()[module].read_text())) or ""
        assert expected == declared(doc), f"{module}: README says {chapters!r}"


@pytest.mark.parametrize("module", sorted(modules()))
def test_modules_import_only_from_their_layer_and_below(module):
    layer = LAYERS[module.split(".")[1]]
    package = module.rsplit(".", 1)[0]
    for other in imported(ast.parse(modules()[module].read_text()), package):
        if other == "bnhelpers":
            continue
        assert LAYERS[other.split(".")[1]] <= layer, f"{module} (layer {layer}) imports {other}"


def _named_in_prose():
    """Every dotted ``bnhelpers.…`` name in the book's pages and notebook text cells, with where it stands."""
    pattern = re.compile(r"\bbnhelpers(?:\.[A-Za-z_][A-Za-z_0-9]*)+")
    sources = [(p.name, p.read_text()) for p in sorted((ROOT / "book").glob("*.md"))]
    for notebook in sorted((ROOT / "book").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        sources += [(notebook.name, "".join(c["source"])) for c in cells if c["cell_type"] == "markdown"]
    sources += [("README.md", (ROOT / "README.md").read_text()), ("bnhelpers/README.md", (PACKAGE / "README.md").read_text())]
    return [(where, name) for where, text in sources for name in pattern.findall(text)]


def test_every_bnhelpers_name_in_the_prose_exists():
    import importlib

    from bnhelpers import setup

    setup(0)
    missing = []
    for where, name in _named_in_prose():
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            try:
                for attr in parts[cut:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                missing.append(f"{where}: {name}")
            break
        else:
            missing.append(f"{where}: {name}")
    assert not missing, "the prose names what does not exist: " + "; ".join(missing)
