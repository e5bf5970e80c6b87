"""What the website offers a reader: search, launch and download buttons, numbered chapters,
a landing page that says how to use the book, and no asset fetched from outside the site."""

import json
import re
from urllib.parse import urlparse

import pytest
import yaml
from bs4 import BeautifulSoup
from sitekit import ROOT, SITE, book_config, source_of, toc_pages

NOTEBOOK_PAGES = [page for page in toc_pages() if source_of(page).suffix == ".ipynb"]


def soup_of(page):
    return BeautifulSoup((SITE / f"{page}.html").read_text(encoding="utf-8"), "html.parser")


def title_of(page):
    """A chapter's title as the page shows it, and its section number ("1. ")."""
    h1 = soup_of(page).select_one("article.bd-article h1")
    number = h1.select_one(".section-number")
    for part in h1.select(".section-number, .headerlink"):
        part.extract()
    return h1.get_text(strip=True), number.get_text() if number else None


@pytest.fixture(scope="module")
def repository():
    repo = book_config()["repository"]
    owner_and_name = urlparse(repo["url"]).path.strip("/")
    return owner_and_name, repo.get("branch", "master")


def test_chapters_are_numbered_in_reading_order(site):
    """Chapters show 1., 2., ... in the order of _toc.yml; a chapter's section pages show its
    number followed by increasing section numbers (3.1., 3.2., ... after the chapter's own sections)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    for n, chapter in enumerate(toc.get("chapters", []), start=1):
        assert title_of(chapter["file"])[1] == f"{n}. "
        previous = 0
        for section in chapter.get("sections", []):
            number = title_of(section["file"])[1]
            assert re.fullmatch(rf"{n}\.\d+\. ", number), f"{section['file']}: {number!r}"
            assert int(number.split(".")[1]) > previous
            previous = int(number.split(".")[1])


@pytest.mark.parametrize("page", NOTEBOOK_PAGES)
def test_notebook_page_has_launch_and_download_buttons(site, page, repository):
    owner_and_name, branch = repository
    links = {a["href"] for a in soup_of(page).select("a[href]")}
    assert f"https://colab.research.google.com/github/{owner_and_name}/blob/{branch}/{page}.ipynb" in links
    assert f"https://mybinder.org/v2/gh/{owner_and_name}/{branch}?urlpath=lab/tree/{page}.ipynb" in links
    depth = "../" * page.count("/")
    download = f"{depth}_sources/{page}.ipynb"
    assert download in links
    # The download is the committed notebook, outputs included.
    downloaded = json.loads((SITE / "_sources" / f"{page}.ipynb").read_text(encoding="utf-8"))
    assert downloaded == json.loads(source_of(page).read_text(encoding="utf-8"))


def test_landing_page_says_who_it_is_for_and_how_to_run_it(site):
    text = soup_of(toc_pages()[0]).select_one("article.bd-article").get_text(" ", strip=True)
    for needed in ("Who this book is for", "What you will learn", "make lab", "nbval", "Colab", "Binder"):
        assert needed in text


ASSET_ATTRIBUTES = {"script": "src", "img": "src", "iframe": "src", "source": "src", "link": "href"}


def test_no_page_refers_to_an_asset_outside_the_site(site):
    """Static scan of every built page (genindex and search included): scripts, styles, images
    and icons are relative URLs into the site. Links (<a>) may point anywhere."""
    pages = sorted(SITE.rglob("*.html"))
    assert len(pages) >= len(toc_pages())
    outside = []
    for path in pages:
        soup = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")
        for tag, attribute in ASSET_ATTRIBUTES.items():
            for element in soup.find_all(tag):
                url = element.get(attribute, "")
                if tag == "link" and not {"stylesheet", "icon", "preload", "modulepreload"} & set(element.get("rel", [])):
                    continue
                if re.match(r"^(https?:)?//", url):
                    outside.append(f"{path.relative_to(SITE)}: <{tag} {attribute}={url}>")
    assert outside == []


def test_mathjax_is_the_pinned_local_copy(site):
    lock = json.loads((ROOT / "site" / "package-lock.json").read_text())
    version = lock["packages"]["node_modules/mathjax"]["version"]
    assert version == "3.2.2"
    script = SITE / "_static" / "mathjax" / "tex-mml-chtml.js"
    assert f'VERSION="{version}"' in script.read_text(encoding="utf-8")
    # MathJax loads its fonts and extensions from next to itself: they are in the site too.
    assert any((SITE / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))


def test_search_box_finds_a_chapter(site, page_and_log, server):
    """Type a chapter's title into the header's search box, as a reader would."""
    tab, log = page_and_log
    chapter = toc_pages()[-1]
    query, _ = title_of(chapter)
    tab.goto(f"{server}{toc_pages()[0]}.html", wait_until="load")
    tab.keyboard.press("Control+k")
    box = tab.locator("#pst-search-dialog input[name=q]")
    box.fill(query)
    box.press("Enter")
    tab.wait_for_url("**/search.html?q=*")
    tab.wait_for_selector("#search-results ul.search li", timeout=20_000)
    hits = tab.eval_on_selector_all("#search-results ul.search li a", "links => links.map(a => a.getAttribute('href'))")
    assert f"{chapter}.html" in hits
    assert log.errors == [] and log.foreign == []
