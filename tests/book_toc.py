"""The book's table of contents (``_toc.yml``) as a list of pages; not a test module.

Shared by tests/test_book.py and the site tests (tests/site/sitekit.py): pytest puts
tests/ on ``sys.path`` for both (tests/conftest.py is loaded for tests/site too), so
``from book_toc import toc_files`` works from either.
"""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _toc_files(entries):
    for entry in entries:
        if "file" in entry:
            yield entry["file"]
        for key in ("chapters", "sections", "parts"):
            yield from _toc_files(entry.get(key, []))


def toc_files() -> list[str]:
    """The pages of ``_toc.yml`` in reading order: source paths relative to the root, without suffix."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"], *_toc_files(toc.get("chapters", []) + toc.get("parts", []))]
