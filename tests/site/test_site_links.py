"""Internal links of the built site: LinkChecker (offline) from every page, and every anchor.

Every <a>, <img>, <script> and <link> that points inside the site must resolve; links to
other sites are not followed (checkextern=0), so this runs offline. Every `page.html#id`
link must find an element with that id. Without /usr/bin/chromium (and CI unset), `make book`
builds the site without the PDF of the book, so the intro's link to it is left out, and said so.
"""

import csv
import os
import posixpath
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from bs4 import BeautifulSoup
from sitekit import CHROMIUM, INSTALL_HINT, source_of, toc_pages

LINKCHECKER = Path(sys.executable).with_name("linkchecker")
CONFIG = Path(__file__).with_name("linkcheckerrc")
PDF_LINK = "../bn-book.pdf"  # the intro's link to the PDF, which only chromium prints (site/make_pdf.py)


def linkcheck(site_dir, start_pages, ignore=()):
    """Run LinkChecker over a copy of `site_dir`; return (the URLs it checked, relative to the site; problems;
    the problems of links written as one of `ignore`, left out of the problems).

    LinkChecker run as root drops its privileges to `nobody`, which may not be allowed to
    read the build folder (pytest's tmp_path is private too), so it checks a world-readable
    copy in a fresh folder under /tmp.
    """
    with tempfile.TemporaryDirectory(prefix="bn-book-linkcheck-", dir="/tmp") as workdir:
        copy = Path(workdir) / "site"
        shutil.copytree(site_dir, copy)
        for path in [Path(workdir), *copy.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        return _run_linkchecker(copy, start_pages, ignore)


def _run_linkchecker(copy, start_pages, ignore):
    urls = [(copy / page).as_uri() for page in start_pages]
    result = subprocess.run(
        [str(LINKCHECKER), "--config", str(CONFIG), "--no-status", "--verbose", "--output", "csv", *urls],
        capture_output=True, text=True, timeout=600,
    )
    rows = list(csv.DictReader((line for line in result.stdout.splitlines() if not line.startswith("#")), delimiter=";"))
    assert rows, f"LinkChecker checked nothing:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    problems, ignored = [], []
    for row in rows:
        if row["valid"] != "True" or row["warningstring"]:
            problem = f"{row['parentname'].replace(copy.as_uri(), '')}: {row['urlname']}: {row['result'] or ''} {row['warningstring']}"
            (ignored if row["urlname"] in ignore else problems).append(problem.strip())
    checked = {row["url"].replace(copy.as_uri() + "/", "", 1) for row in rows}
    return checked, problems, ignored


def test_site_has_no_broken_internal_links_or_missing_images(site):
    pages = [f"{page}.html" for page in toc_pages()]
    no_pdf = not CHROMIUM.exists() and not os.environ.get("CI")  # then `make book` made no PDF
    checked, problems, ignored = linkcheck(site, ["index.html", *pages], ignore=[PDF_LINK] if no_pdf else [])
    if no_pdf:
        print(f"\nthe link {PDF_LINK} not checked ({len(ignored)} problem left out: {ignored}): without chromium "
              f"`make book` makes no PDF. {INSTALL_HINT}")
    print(f"LinkChecker: {len(checked)} URLs checked from {len(pages) + 1} pages, {len(problems)} problems")
    assert problems == []
    # It read every page, and followed the links on them: the download of each notebook page.
    assert set(pages) <= checked
    assert {f"_sources/{page}.ipynb" for page in toc_pages() if source_of(page).suffix == ".ipynb"} <= checked


def missing_anchors(site_dir):
    """Links `page.html#id` (or `#id`) between the site's pages whose target has no such id."""
    pages = {path.relative_to(site_dir).as_posix(): path for path in site_dir.rglob("*.html")}
    soups = {name: BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser") for name, path in pages.items()}
    ids = {name: {el["id"] for el in soup.select("[id]")} | {el["name"] for el in soup.select("a[name]")}
           for name, soup in soups.items()}
    missing = []
    for name, soup in soups.items():
        for link in soup.select("a[href]"):
            url = urlparse(link["href"])
            if url.scheme or url.netloc or not url.fragment:
                continue
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), unquote(url.path))) if url.path else name
            if target in ids and unquote(url.fragment) not in ids[target]:
                missing.append(f"{name}: {link['href']}")
    return missing


def test_every_internal_anchor_exists(site):
    assert missing_anchors(site) == []


def write_broken_site(folder):
    folder.mkdir()
    (folder / "index.html").write_text(
        '<html><body><p id="here">x</p><a href="other.html#nowhere">a</a><a href="gone.html">b</a>'
        '<a href="#here">c</a><a href="other.html#there">d</a><img src="missing.png" alt="m"><a href="bn-book.pdf">f</a>'
        '<a href="https://example.invalid/">e</a></body></html>'
    )
    (folder / "other.html").write_text('<html><body><p id="there">y</p></body></html>')
    return folder


def test_link_checks_catch_broken_links_anchors_and_images(tmp_path):
    """Control: a page with a broken link, a missing image and a missing anchor fails; a missing PDF left out
    as the intro's is without chromium is the only problem left out."""
    broken = write_broken_site(tmp_path / "broken")
    _, problems, ignored = linkcheck(broken, ["index.html"], ignore=["bn-book.pdf"])
    print(f"control: {len(problems)} problems, {len(ignored)} left out: {ignored}")
    assert len(problems) == 2 and len(ignored) == 1 and "bn-book.pdf" in ignored[0]
    assert {("gone.html" in p, "missing.png" in p) for p in problems} == {(True, False), (False, True)}
    assert missing_anchors(broken) == ["index.html: other.html#nowhere"]
