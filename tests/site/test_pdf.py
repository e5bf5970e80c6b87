"""The whole book as one PDF (_build/pdf/bn-book.pdf, made by `make pdf`, which `make book` runs).

Reads the PDF that chromium printed from the single-page build (site/make_pdf.py) with pypdf and
checks what a reader gets: a sane number of pages; a title page and a printed table of contents;
every chapter title of _toc.yml with its number as the site shows it ("1. The math", "7.2. ...");
a PDF outline (bookmarks) with the chapters; every figure of the notebooks embedded as an image, and
a caption ("Fig. 4.3") for each; equations typeset (no raw TeX such as `$$` or `\\frac{` in the text
outside code); the Chinese title of a source printed in its characters, not as missing glyphs. The
intro page of the site links to the PDF, and the link resolves to the same file. A control test
prints a small page with raw TeX, code, an image, headings and Chinese, and checks that the same
functions find each.
"""

import functools
import json
import os
import posixpath
import re
import time
import unicodedata

import pytest
import yaml
from bs4 import BeautifulSoup
from pypdf import PdfReader
from sitekit import CHROMIUM, INSTALL_HINT, ROOT, SITE, cjk_fonts, source_of, toc_pages

PDF = ROOT / "_build" / "pdf" / "bn-book.pdf"
SITE_PDF = SITE / "bn-book.pdf"
RAW_TEX = ["$$", "\\(", "\\[", "\\frac{", "\\sum", "\\sqrt", "\\mathrm", "\\begin{", "\\left"]
MONO = re.compile(r"Mono|Courier|Consol|Menlo")  # the fonts of code cells and inline code
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")  # runs of Chinese characters
CJK_SOURCES = [ROOT / "book" / "intro.md", ROOT / "references.bib"]  # where the book has Chinese (a source's title)
FONT_HINT = ("install a CJK font with `sudo apt-get install -y fonts-wqy-zenhei` (.ci/run does), then `make pdf` "
             "prints the PDF again")


class Book:
    """Text of each page, text outside code (prose), outline titles and embedded images of a PDF."""

    def __init__(self, path):
        start = time.monotonic()
        reader = PdfReader(path)
        prose = []

        def keep_prose(text, cm, tm, font, size):  # the font of each run of text tells code from prose
            if not text.strip() or not MONO.search((font or {}).get("/BaseFont", "")):
                prose.append(text)

        self.page_texts = [page.extract_text(visitor_text=keep_prose) for page in reader.pages]
        self.text = "\n".join(self.page_texts)
        self.prose = "".join(prose)
        self.outline = list(outline_titles(reader.outline))
        self.images = image_ids(reader)
        self.reader = reader
        self.seconds = time.monotonic() - start


def outline_titles(outline):
    """Titles of the outline (bookmarks), depth first."""
    for item in outline:
        yield from outline_titles(item) if isinstance(item, list) else [item.title]


def image_ids(reader):
    """Object numbers of the image XObjects the pages draw (directly or inside forms). Not `page.images`, which
    also parses every content stream for inline images (8 s for the book) and which Chromium never writes:
    the control checks that both count the same."""
    found, seen = set(), set()

    def visit(resources):
        xobjects = resources.get_object().get("/XObject")
        for ref in xobjects.get_object().values() if xobjects is not None else []:  # streams: indirect objects
            if ref.idnum not in seen:
                seen.add(ref.idnum)
                xobject = ref.get_object()
                if xobject["/Subtype"] == "/Image":
                    found.add(ref.idnum)
                elif xobject["/Subtype"] == "/Form" and "/Resources" in xobject:
                    visit(xobject["/Resources"])
    for page in reader.pages:
        if "/Resources" in page:
            visit(page["/Resources"])
    return found


def raw_tex(text):
    """The TeX markers in `text` (text outside code), with some context."""
    return [f"{marker}: ...{text[max(0, i - 30):i + 30]!r}..." for marker in RAW_TEX
            for i in [m.start() for m in re.finditer(re.escape(marker), text)][:3]]


def squash(text):
    """Text compared without whitespace and with straight quotes: PDF text has its own line breaks."""
    text = unicodedata.normalize("NFKC", text)  # ligatures (ﬀ, ﬁ) to letters
    return re.sub(r"\s+", "", text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"')
                  .replace("\u201d", '"').replace("\u00a0", " "))


# ---------------------------------------------------------------- what the book should contain

@functools.lru_cache
def chapter_titles():
    """(number as the site shows it, title) of every page of _toc.yml, in reading order; the root has no number.

    The title is the first heading of the source file (Markdown syntax removed); the number is the one
    on the page's heading in the built site (chapter 7's own sections come before its section pages)."""
    out = []
    for page in toc_pages():
        source = source_of(page)
        if source.suffix == ".ipynb":
            cells = json.loads(source.read_text())["cells"]
            lines = [line for cell in cells if cell["cell_type"] == "markdown"
                     for line in "".join(cell["source"]).splitlines()]
        else:
            lines = source.read_text().splitlines()
        heading = next(line for line in lines if re.match(r"#\s", line))
        built = SITE / f"{page}.html"
        if not built.exists():
            pytest.fail(f"no {built.relative_to(ROOT)}: run `make book`")
        html = built.read_text(encoding="utf-8")
        number = re.search(r'<h1[^>]*>\s*<span class="section-number">([^<]*)</span>', html)
        out.append((number.group(1).strip() if number else "", re.sub(r"[`*]", "", heading.lstrip("#").strip())))
    return out


def expected_figures():
    """(image/png outputs in the notebooks, of them with a caption, images in the .md pages) of the book."""
    pngs = captioned = md_images = 0
    for page in toc_pages():
        source = source_of(page)
        if source.suffix == ".ipynb":
            for cell in json.loads(source.read_text())["cells"]:
                n = sum("image/png" in out.get("data", {}) for out in cell.get("outputs", []))
                pngs += n
                if n and cell.get("metadata", {}).get("mystnb", {}).get("figure", {}).get("caption"):
                    captioned += 1
        else:
            md_images += len(re.findall(r"!\[|<img\b|```\{(?:figure|image)\}", source.read_text()))
    return pngs, captioned, md_images


@pytest.fixture(scope="module")
def book():
    if not PDF.exists():
        if not CHROMIUM.exists() and not os.environ.get("CI"):
            pytest.skip(f"no {PDF.relative_to(ROOT)}: `make pdf` prints it with chromium. {INSTALL_HINT}")
        pytest.fail(f"no {PDF.relative_to(ROOT)}: run `make pdf` (`make book` and `make test` make it)")
    stale = [page for page in toc_pages() if PDF.stat().st_mtime < source_of(page).stat().st_mtime]
    if stale:
        pytest.fail(f"{PDF.relative_to(ROOT)} is older than {', '.join(stale)}: run `make pdf` (`make book` runs it)")
    parsed = Book(PDF)
    print(f"\n{PDF.relative_to(ROOT)}: {PDF.stat().st_size / 1e6:.1f} MB, {len(parsed.page_texts)} pages, "
          f"{len(parsed.images)} images, {len(parsed.outline)} outline entries, {len(parsed.text)} characters "
          f"of text (read in {parsed.seconds:.1f} s)")
    return parsed


# ---------------------------------------------------------------- the tests

def test_pdf_has_a_sane_number_of_pages_a_title_page_and_a_table_of_contents(book):
    pages = len(book.page_texts)
    print(f"{pages} pages")
    assert 30 <= pages <= 600
    title = yaml.safe_load((ROOT / "_config.yml").read_text())["title"]
    assert squash(title) in squash(book.page_texts[0])
    # The printed contents: the pages before the intro's first section list every numbered chapter.
    intro = next(i for i, text in enumerate(book.page_texts) if "Whothisbookisfor" in squash(text))
    front = squash("".join(book.page_texts[1:intro]))
    assert front.startswith("Contents")
    numbered = [f"{number}{title}" for number, title in chapter_titles() if number]
    missing = [entry for entry in numbered if squash(entry) not in front]
    print(f"contents on pages 2 to {intro}: {len(numbered) - len(missing)} of {len(numbered)} numbered "
          "chapters and sections")
    assert missing == []


def test_every_chapter_title_is_in_the_pdf_with_its_number(book):
    titles = chapter_titles()
    text = squash(book.text)
    missing = [f"{number} {title}".strip() for number, title in titles if squash(f"{number}{title}") not in text]
    numbered = [number for number, _ in titles if number]
    print(f"{len(titles) - len(missing)} of {len(titles)} titles of _toc.yml found with their numbers "
          f"({numbered[0]} to {numbered[-1]}, as the site numbers them)")
    assert len(numbered) == len(titles) - 1  # every page but the intro has a number on the site
    assert missing == []
    # In reading order: each numbered heading after the previous one (past the table of contents).
    body = text[text.index(squash("Who this book is for")):]
    positions = [body.find(squash(f"{number}{title}")) for number, title in titles if number]
    assert -1 not in positions and positions == sorted(positions)


def test_pdf_outline_lists_the_chapters(book):
    print(f"{len(book.outline)} outline entries, e.g. {book.outline[:3]}")
    outline = [squash(entry) for entry in book.outline]
    missing = [f"{number} {title}" for number, title in chapter_titles() if squash(f"{number}{title}") not in outline]
    assert missing == []


def test_every_figure_is_embedded_with_its_caption(book):
    pngs, captioned, md_images = expected_figures()
    captions = sorted(set(re.findall(r"Fig\. ?(\d+\.\d+)", book.prose)), key=lambda n: tuple(map(int, n.split("."))))
    print(f"{len(book.images)} images embedded; the notebooks have {pngs} image/png outputs and the .md pages "
          f"{md_images} images; {len(captions)} captions (Fig. {captions[0]} to Fig. {captions[-1]}) for {captioned} "
          "captioned figures")
    assert pngs > 0
    assert len(book.images) >= pngs + md_images
    assert len(captions) >= captioned


def test_equations_are_typeset_and_no_raw_tex_is_left(book):
    found = raw_tex(book.prose)
    # Typeset math: MathJax's glyphs come out as Unicode math letters and symbols in the text.
    symbols = sum(book.prose.count(c) for c in "σμγβϵε∑√∂")
    print(f"{len(found)} TeX markers outside code; {symbols} math symbols (σ μ γ β ε ∑ √ ∂) in the text")
    assert found == []
    assert symbols >= 50


def chinese_in_sources():
    """The runs of Chinese characters in the book's sources (a source's title, in the intro and the references)."""
    return sorted({run for path in CJK_SOURCES for run in CJK.findall(path.read_text(encoding="utf-8"))})


def test_chinese_title_is_printed_in_its_characters(book):
    runs, fonts = chinese_in_sources(), cjk_fonts()
    missing = [run for run in runs if run not in squash(book.text)]
    print(f"{len(runs)} runs of Chinese in the sources ({' '.join(runs)}): {len(runs) - len(missing)} in the PDF's "
          f"text; {book.text.count(chr(0))} missing glyphs (NUL) in the text; {len(fonts)} CJK font files installed")
    if missing and not fonts and not os.environ.get("CI"):
        pytest.skip(f"no CJK font, so the Chinese title prints as boxes: {FONT_HINT}")
    assert runs != []
    assert missing == [], FONT_HINT
    assert chr(0) not in book.text


def test_site_copy_of_the_pdf_is_the_same_file(book):
    assert SITE_PDF.exists(), f"{SITE_PDF.relative_to(ROOT)} missing: `make pdf` copies it there"
    assert SITE_PDF.read_bytes() == PDF.read_bytes()


def pdf_links(page_file, site):
    """The links to a .pdf on one built page, resolved to paths in the site."""
    soup = BeautifulSoup(page_file.read_text(encoding="utf-8"), "html.parser")
    here = page_file.parent.relative_to(site).as_posix()
    return {a["href"]: site / posixpath.normpath(posixpath.join(here, a["href"]))
            for a in soup.select('a[href$=".pdf"]')}


def test_intro_page_links_to_the_pdf(site, book, tmp_path):
    links = pdf_links(site / "book" / "intro.html", site)
    print(f"links to a PDF on the intro page: {sorted(links)}")
    assert [path for path in links.values() if path == SITE_PDF and path.read_bytes()[:5] == b"%PDF-"] != []
    # Control: the same link from a page one folder higher points outside the site, where there is no PDF.
    (tmp_path / "book").mkdir()
    (tmp_path / "page.html").write_text('<a href="../bn-book.pdf">x</a>')
    assert not any(path.exists() for path in pdf_links(tmp_path / "page.html", tmp_path).values())


CONTROL_PAGE = """<!doctype html><html lang="en"><head><title>control</title>
<style>pre { font-family: "DejaVu Sans Mono", monospace; } body { font-family: "DejaVu Sans", sans-serif; }</style>
</head><body><h1>Control heading</h1><p>Raw TeX left in prose: $$x^2$$ and \\frac{a}{b} here.</p>
<pre>code may say \\sqrt{x} and $$</pre><h2>Second heading</h2><p>σ and μ, typed.</p>
<p>Chinese: 批标准化. Yi, which no font here has: ꀀꀁ.</p>
<img alt="a small picture" src="data:image/png;base64,{png}"></body></html>"""


def test_pdf_checks_catch_raw_tex_and_count_images_and_outline(browser, tmp_path):
    """Control: a page with raw TeX in its prose, TeX in code, one image, two headings, Chinese and characters no
    font has, printed by chromium."""
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buffer, format="PNG")
    page = browser.new_page()
    try:
        page.set_content(CONTROL_PAGE.replace("{png}", base64.b64encode(buffer.getvalue()).decode()))
        for outline in (True, False):
            page.pdf(path=str(tmp_path / f"control-{outline}.pdf"), format="A4", outline=outline, tagged=outline)
    finally:
        page.close()
    with_outline, without = Book(tmp_path / "control-True.pdf"), Book(tmp_path / "control-False.pdf")
    found = raw_tex(with_outline.prose)
    fonts = cjk_fonts()
    print(f"control: {found}, images {len(with_outline.images)}, outline {with_outline.outline}, "
          f"{with_outline.text.count(chr(0))} missing glyphs (NUL), Chinese {'批标准化' in with_outline.text} "
          f"with {len(fonts)} CJK font files")
    assert {f.split(":")[0] for f in found} == {"$$", "\\frac{"}  # \sqrt and the second $$ are in code
    assert "\\sqrt{x}" in with_outline.text and "Controlheading" in squash(with_outline.text)
    assert "σ and μ" in with_outline.prose
    assert len(with_outline.images) == sum(len(page.images) for page in with_outline.reader.pages) == 1
    assert ("批标准化" in with_outline.text) == bool(fonts)  # printed only where a CJK font is installed
    assert "ꀀ" not in with_outline.text and with_outline.text.count(chr(0)) >= 2  # no font: missing glyphs
    assert with_outline.outline == ["Control heading", "Second heading"] and without.outline == []
