"""Book hygiene: the table of contents, the notebooks and their stored outputs agree."""

import json
import re
from pathlib import Path

import pytest
import yaml

from book_toc import toc_files

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def test_toc_and_notebooks_are_the_same_set():
    listed = {f for f in toc_files() if (ROOT / f"{f}.ipynb").exists()}
    on_disk = {str(p.relative_to(ROOT).with_suffix("")) for p in NOTEBOOKS}
    assert listed == on_disk
    for f in toc_files():
        assert any((ROOT / f"{f}{ext}").exists() for ext in (".ipynb", ".md")), f"{f} in _toc.yml has no file"


def _page_title(page: str) -> str:
    path = ROOT / f"{page}.ipynb"
    if path.exists():
        text = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown")
    else:
        text = (ROOT / f"{page}.md").read_text()
    return next(line[2:] for line in text.splitlines() if line.startswith("# "))


@pytest.mark.parametrize("page", toc_files())
def test_page_titles_are_plain_text(page):
    """A page's title also appears where MathJax does not run (the sidebar, the previous/next links, the PDF's
    bookmarks), so it may not contain math: write Greek letters as characters (zero-γ), not as $\\gamma$."""
    title = _page_title(page)
    assert "$" not in title and "\\" not in title, title


def test_site_build_does_not_execute_notebooks():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off"
    assert config["execute"]["stderr_output"] in {"warn", "error", "severe"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_was_run_top_to_bottom_cleanly(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert code, "a chapter without code cannot back its claims"
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1))
    assert "bnbook-launch" in code[0]["metadata"].get("tags", []), "the first code cell must be the launch cell"
    assert "setup(" in "".join(code[1]["source"]), "the second code cell must call bnhelpers.setup"
    for cell in code:
        for out in cell["outputs"]:
            assert out["output_type"] != "error", f"stored error in: {''.join(cell['source'])[:60]}"
            assert out.get("name") != "stderr", f"stored stderr: {''.join(out.get('text', ''))[:80]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_are_ignored_only_for_timings(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        tags = cell.get("metadata", {}).get("tags", [])
        if "NBVAL_IGNORE_OUTPUT" in src or "nbval-ignore-output" in tags:
            assert "time" in src.lower(), f"output ignored in a cell that times nothing: {src[:60]}"
        assert "NBVAL_SKIP" not in src and "nbval-skip" not in tags


def _code_cells():
    for path in NOTEBOOKS:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                yield path, cell


def test_at_most_four_cells_ignore_their_output():
    ignored = [p.name for p, c in _code_cells() if "NBVAL_IGNORE_OUTPUT" in "".join(c["source"])
               or "nbval-ignore-output" in c.get("metadata", {}).get("tags", [])]
    assert len(ignored) <= 4, ignored


def test_declared_tolerances_are_few_and_each_says_why():
    """Cells compared within a tolerance (tests/nbval_tolerance.py) instead of exactly: chaotic ones only."""
    from nbval_tolerance import tolerance_of

    declared = [(p.name, tolerance_of(c["metadata"])) for p, c in _code_cells()
                if "tolerance" in c["metadata"].get("bnbook", {})]
    assert len(declared) <= 9, [name for name, _ in declared]   # the nine measured chaotic cells; do not add more lightly
    for name, spec in declared:
        assert len(spec["reason"]) > 40 and "chaotic" in spec["reason"], (name, spec["reason"])
        assert spec["rtol"] <= 0.3, (name, spec)
        assert spec["lines"], f"{name}: name the chaotic lines, so that the others stay exact"


def test_chapters_that_train_print_float64_results():
    """The README's rule: printed numbers that come out of training are float64 ("Writing a chapter", 3)."""
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        code = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
        trains = any(word in code for word in (".fit(", "train_seeds(", "fit_regression(", "train_replicated("))
        first = "".join([c for c in nb["cells"] if c["cell_type"] == "code"][1]["source"])  # after the launch cell
        if trains:
            assert 'keras.config.set_floatx("float64")' in first, f"{path.name} trains in float32"
            assert "float64" in "".join(nb["cells"][0]["source"]), f"{path.name}: say so in the introduction"


def test_site_build_fails_on_a_stored_stderr_stream(tmp_path):
    """The book's own _config.yml turns a stored stderr output into a failing `-W` build,
    while the same notebook with a stdout stream builds cleanly."""
    import shutil
    import subprocess
    import sys

    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    jb = Path(sys.executable).with_name("jupyter-book")
    results = {}
    for stream in ("stdout", "stderr"):
        book = tmp_path / stream
        book.mkdir()
        shutil.copy(ROOT / "_config.yml", book / "_config.yml")
        shutil.copy(ROOT / "references.bib", book / "references.bib")  # the config's bibliography
        (book / "site").symlink_to(ROOT / "site", target_is_directory=True)  # the config's extension and MathJax
        (book / "_toc.yml").write_text("format: jb-book\nroot: page\n")
        cell = new_code_cell("print('hi')", execution_count=1)
        cell.outputs = [new_output("stream", name=stream, text="a TensorFlow log line\n")]
        nb = new_notebook(cells=[new_markdown_cell("# Page"), cell])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        nbformat.write(nb, book / "page.ipynb")
        results[stream] = subprocess.run([str(jb), "build", str(book), "-W", "-n", "--keep-going"],
                                         capture_output=True, text=True, timeout=300)
    assert results["stdout"].returncode == 0, results["stdout"].stdout[-2000:]
    assert results["stderr"].returncode != 0
    assert "stderr was found in the cell outputs" in results["stderr"].stdout + results["stderr"].stderr


CITE_ROLE = re.compile(r"\{cite(?::[a-z]+)*\}`([^`]*)`")


def _bib_entries():
    """{key: {field: value}} of references.bib, read with pybtex (what sphinxcontrib-bibtex uses)."""
    from pybtex.database import parse_file

    data = parse_file(str(ROOT / "references.bib"), bib_format="bibtex")
    return {key: (entry.fields, entry.persons) for key, entry in data.entries.items()}


def _cited_keys():
    """{key: [files citing it]} for every {cite}, {cite:p}, {cite:t}, ... role in book/*.md and notebook Markdown."""
    texts = [(p.name, p.read_text()) for p in sorted((ROOT / "book").glob("*.md"))]
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        texts.append((path.name, "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")))
    cited = {}
    for name, text in texts:
        for keys in CITE_ROLE.findall(text):
            for key in keys.split(","):
                cited.setdefault(key.strip(), []).append(name)
    return cited


def test_every_cited_key_is_in_the_bibliography():
    entries = _bib_entries()
    missing = {key: files for key, files in _cited_keys().items() if key not in entries}
    assert not missing, f"cited but not in references.bib: {missing}"


def test_every_bibliography_entry_names_its_author_title_year_and_link():
    """A reader can find every source: who wrote it, what it is called, when, and where (url, doi or eprint)."""
    entries = _bib_entries()
    assert len(entries) >= 12   # seven papers and the five web sources the book grew from
    for key, (fields, persons) in entries.items():
        assert persons.get("author") or fields.get("organization"), f"{key}: no author or organization"
        assert fields.get("title", "").strip(), f"{key}: no title"
        assert re.fullmatch(r"(19|20)\d\d", fields.get("year", "")), f"{key}: no four-digit year"
        assert any(fields.get(f, "").strip() for f in ("url", "doi", "eprint")), f"{key}: no url, doi or eprint"


def test_cite_role_pattern_finds_every_form():
    """The check above only works if the pattern sees each role form, several keys included."""
    text = "{cite}`a` {cite:p}`b, c` {cite:t}`d` {cite:ts}`e`"
    keys = [k.strip() for group in CITE_ROLE.findall(text) for k in group.split(",")]
    assert keys == ["a", "b", "c", "d", "e"]
    assert "shu2016" in _cited_keys()   # book/intro.md cites the web sources
