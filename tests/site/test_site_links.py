"""Internal links of the built site: LinkChecker, offline, on every page and anchor.

Every <a>, <img>, <script> and <link> that points inside the site must resolve (anchors
included); links to other sites are not followed (checkextern=0), so this runs offline.
"""

import csv
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sitekit import SITE, toc_pages

LINKCHECKER = Path(sys.executable).with_name("linkchecker")
CONFIG = Path(__file__).with_name("linkcheckerrc")


def linkcheck(site_dir, start_pages):
    """Run LinkChecker over a copy of `site_dir`; return (number of URLs checked, problems).

    LinkChecker run as root drops its privileges to `nobody`, which may not be allowed to
    read the build folder (pytest's tmp_path is private too), so it checks a world-readable
    copy in a fresh folder under /tmp.
    """
    with tempfile.TemporaryDirectory(prefix="bn-book-linkcheck-", dir="/tmp") as workdir:
        copy = Path(workdir) / "site"
        shutil.copytree(site_dir, copy)
        for path in [Path(workdir), *copy.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        return _run_linkchecker(copy, start_pages)


def _run_linkchecker(copy, start_pages):
    urls = [(copy / page).as_uri() for page in start_pages]
    result = subprocess.run(
        [str(LINKCHECKER), "--config", str(CONFIG), "--no-status", "--verbose", "--output", "csv", *urls],
        capture_output=True, text=True, timeout=600,
    )
    rows = list(csv.DictReader((line for line in result.stdout.splitlines() if not line.startswith("#")), delimiter=";"))
    assert rows, f"LinkChecker checked nothing:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    problems = [
        f"{row['parentname'].replace(copy.as_uri(), '')}: {row['urlname']}: {row['result'] or ''} {row['warningstring']}".strip()
        for row in rows
        if row["valid"] != "True" or row["warningstring"]
    ]
    return len(rows), problems


def test_site_has_no_broken_internal_links_or_missing_images(site):
    checked, problems = linkcheck(site, ["index.html", *(f"{page}.html" for page in toc_pages())])
    assert problems == []
    assert checked > 10 * len(toc_pages())


def test_linkcheck_catches_broken_links_anchors_and_images(tmp_path):
    """Control: a page with a broken link, a missing anchor and a missing image fails."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "index.html").write_text(
        '<html><body><p id="here">x</p><a href="other.html#nowhere">a</a><a href="gone.html">b</a>'
        '<a href="#here">c</a><img src="missing.png" alt="m"><a href="https://example.invalid/">d</a></body></html>'
    )
    (broken / "other.html").write_text('<html><body><p id="there">y</p></body></html>')
    _, problems = linkcheck(broken, ["index.html"])
    assert len(problems) == 3
    assert {("gone.html" in p, "missing.png" in p, "nowhere" in p) for p in problems} == {
        (True, False, False), (False, True, False), (False, False, True)
    }
