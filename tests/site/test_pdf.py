"""The whole book as one PDF (_build/pdf/bn-book.pdf, made by `make pdf`, which `make book` runs).

Reads the PDF that chromium printed from the single-page build (site/make_pdf.py) and checks what
a reader gets: a sane number of pages; a title page and a printed table of contents; every chapter
title of _toc.yml with its number as the site shows it ("1. The math", "7.2. ..."); a PDF outline
(bookmarks) with the chapters; every figure of the notebooks embedded as an image, and a caption
("Fig. 4.3") for each; equations typeset (no raw TeX such as `$$` or `\\frac{` in the text outside
code). The intro page of the site links to the PDF, and the link resolves to the same file.

No PDF library is pinned in the project, so this module reads the PDF itself with a small parser
of the subset Chromium's Skia writes (a classic xref table, Flate streams, Type0 fonts with
ToUnicode maps). A control test prints a small page with raw TeX, code, an image and headings, and
checks that the same functions find each.
"""

import functools
import json
import os
import posixpath
import re
import time
import unicodedata
import zlib

import pytest
import yaml
from bs4 import BeautifulSoup
from sitekit import CHROMIUM, INSTALL_HINT, ROOT, SITE, source_of, toc_pages

PDF = ROOT / "_build" / "pdf" / "bn-book.pdf"
SITE_PDF = SITE / "bn-book.pdf"
RAW_TEX = ["$$", "\\(", "\\[", "\\frac{", "\\sum", "\\sqrt", "\\mathrm", "\\begin{", "\\left"]
MONO = re.compile(r"Mono|Courier|Consol|Menlo")  # the fonts of code cells and inline code


# ---------------------------------------------------------------- a small reader for Skia's PDFs

class MiniPdf:
    """Objects, pages, text, images and outline of a PDF with a classic xref table (what Chromium writes)."""

    WS = b" \t\r\n\f\x00"

    def __init__(self, data):
        self.data = data
        start = int(re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", data).group(1))
        table = re.compile(rb"xref\s+(\d+)\s+(\d+)\s+").match(data, start)
        if not table:
            raise ValueError("no classic xref table (not a PDF printed by Chromium?)")
        first, count, pos = int(table.group(1)), int(table.group(2)), table.end()
        self.offsets = {first + i: int(data[pos + 20 * i:pos + 20 * i + 10])
                        for i in range(count) if data[pos + 20 * i + 17:pos + 20 * i + 18] == b"n"}
        self.trailer = self._parse(data.index(b"trailer", pos) + 7)[0]
        self._objects = {}

    # -- objects
    def _skip(self, pos):
        while pos < len(self.data) and self.data[pos] in self.WS:
            pos += 1
        return pos

    def _parse(self, pos):
        d = self.data
        pos = self._skip(pos)
        if d.startswith(b"<<", pos):
            out, pos = {}, pos + 2
            while not d.startswith(b">>", self._skip(pos)):
                key, pos = self._parse(pos)
                out[key[1]], pos = self._parse(pos)
            return out, self._skip(pos) + 2
        if d[pos:pos + 1] == b"[":
            out, pos = [], pos + 1
            while d[self._skip(pos):self._skip(pos) + 1] != b"]":
                item, pos = self._parse(pos)
                out.append(item)
            return out, self._skip(pos) + 1
        if d[pos:pos + 1] == b"(":
            return literal_string(d, pos)
        if d[pos:pos + 1] == b"<":
            end = d.index(b">", pos)
            return bytes.fromhex(re.sub(rb"\s", b"", d[pos + 1:end]).decode()), end + 1
        if d[pos:pos + 1] == b"/":
            m = re.compile(rb"/[^\s/<>\[\]()]*").match(d, pos)
            return ("name", m.group()[1:].decode()), m.end()
        m = re.compile(rb"(\d+)\s+\d+\s+R\b").match(d, pos)
        if m:
            return ("ref", int(m.group(1))), m.end()
        m = re.compile(rb"[-+]?(?:\d+\.?\d*|\.\d+)|true|false|null").match(d, pos)
        if not m:
            raise ValueError(f"cannot parse the PDF at byte {pos}: {d[pos:pos + 20]!r}")
        token = m.group().decode()
        return (float(token) if token[0] in "+-.0123456789" else token), m.end()

    def obj(self, num):
        """(value, decoded stream or None) of object `num`."""
        if num not in self._objects:
            head = re.compile(rb"\d+\s+\d+\s+obj").match(self.data, self.offsets[num])
            value, pos = self._parse(head.end())
            stream, pos = None, self._skip(pos)
            if self.data.startswith(b"stream", pos):
                pos += 8 if self.data[pos + 6:pos + 8] == b"\r\n" else 7
                stream = self.data[pos:pos + int(self.get(value["Length"]))]
                if value.get("Filter") == ("name", "FlateDecode"):
                    stream = zlib.decompress(stream)
            self._objects[num] = (value, stream)
        return self._objects[num]

    def get(self, value):
        while isinstance(value, tuple) and value[0] == "ref":
            value = self.obj(value[1])[0]
        return value

    def stream(self, ref):
        return self.obj(ref[1])[1]

    # -- the document
    def pages(self):
        def leaves(node):
            node = self.get(node)
            if node.get("Type") == ("name", "Pages"):
                for kid in node["Kids"]:
                    yield from leaves(kid)
            else:
                yield node
        return list(leaves(self.get(self.trailer["Root"])["Pages"]))

    def outline(self):
        """Titles of the outline (bookmarks), depth first."""
        root = self.get(self.trailer["Root"])
        titles = []

        def walk(item):
            while item:
                node = self.get(item)
                titles.append(pdf_text_string(node["Title"]))
                walk(node.get("First"))
                item = node.get("Next")
        if "Outlines" in root:
            walk(self.get(root["Outlines"]).get("First"))
        return titles

    def images(self):
        """Object numbers of the images drawn on the pages (directly or inside form XObjects)."""
        found, seen = set(), set()

        def visit(resources):
            for ref in self.get(self.get(resources or {}).get("XObject", {})).values():
                if ref in seen:
                    continue
                seen.add(ref)
                xobject = self.get(ref)
                if xobject.get("Subtype") == ("name", "Image"):
                    found.add(ref[1])
                elif xobject.get("Subtype") == ("name", "Form"):
                    visit(xobject.get("Resources"))
        for page in self.pages():
            visit(page.get("Resources"))
        return found

    def page_text(self, page):
        """(all text, text outside code) of one page, text runs separated by newlines."""
        resources = self.get(page.get("Resources", {}))
        fonts = {name: self._font(ref) for name, ref in self.get(resources.get("Font", {})).items()}
        contents = page.get("Contents", [])
        data = b"\n".join(self.stream(ref) for ref in (contents if isinstance(contents, list) else [contents]))
        every, prose, font = [], [], (None, {}, 1, False)
        for m in _TEXT_OPS.finditer(data):
            name, hexstr, array, literal = m.group("font", "hex", "array", "lit")
            if name is not None:
                font = fonts.get(name.decode(), (None, {}, 1, False))
                continue
            if hexstr is not None:
                text = decode(font, hex_bytes(hexstr))
            elif literal is not None:
                text = decode(font, literal_string(m.group(), 0)[0])
            elif array is not None:
                text = "".join(decode(font, hex_bytes(part[1:-1])) if part[:1] == b"<"
                               else decode(font, literal_string(part, 0)[0]) if part[:1] == b"("
                               else " " if float(part) < -250 else "" for part in _ARRAY_PARTS.findall(array))
            else:  # ET: Skia places glyph by glyph (Td) and ends a text object at each line
                text = "\n"
            every.append(text)
            if not font[3] or text == "\n":
                prose.append(text)
        return "".join(every), "".join(prose)

    def _font(self, ref):
        """(name, {code: text}, bytes per code, is a code font) of a font."""
        font = self.get(ref)
        name = font.get("BaseFont", ("name", ""))[1]
        cmap, width = {}, 1 if font.get("Subtype") != ("name", "Type0") else 2
        if "ToUnicode" in font:
            cmap, width = parse_cmap(self.stream(font["ToUnicode"]), width)
        return name, cmap, width, bool(MONO.search(name))


def literal_string(data, pos):
    """A PDF literal string `( ... )` starting at `pos`: (bytes, position after it)."""
    out, depth, pos = bytearray(), 1, pos + 1
    escapes = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}
    while True:
        c = data[pos:pos + 1]
        if c == b"\\":
            octal = re.compile(rb"[0-7]{1,3}").match(data, pos + 1)
            if octal:
                out.append(int(octal.group(), 8) & 255)
                pos = octal.end()
                continue
            nxt = data[pos + 1:pos + 2]
            if nxt not in (b"\r", b"\n"):
                out += escapes.get(nxt, nxt)
            pos += 2
            continue
        depth += {b"(": 1, b")": -1}.get(c, 0)
        if depth == 0:
            return bytes(out), pos + 1
        out += c
        pos += 1


def pdf_text_string(raw):
    return raw[2:].decode("utf-16-be") if raw.startswith(b"\xfe\xff") else raw.decode("latin-1")


# The text operators of a content stream: a font (Tf), a string shown (Tj, TJ) and the end of a text object.
_TEXT_OPS = re.compile(
    rb"/(?P<font>[^\s/<>\[\]()%]+)\s+[-+\d.]+\s+Tf\b|<(?P<hex>[0-9A-Fa-f\s]*)>\s*Tj\b"
    rb"|\[(?P<array>(?:[^\]\\(]|\\.|\((?:[^()\\]|\\.)*\))*)\]\s*TJ\b|(?P<lit>\((?:[^()\\]|\\.)*\))\s*Tj\b|\bET\b",
    re.S)
_ARRAY_PARTS = re.compile(rb"<[0-9A-Fa-f\s]*>|\((?:[^()\\]|\\.)*\)|[-+]?(?:\d+\.?\d*|\.\d+)", re.S)


def hex_bytes(hexstr):
    digits = re.sub(rb"\s", b"", hexstr)
    return bytes.fromhex((digits + b"0" * (len(digits) % 2)).decode())


def parse_cmap(data, width):
    """{code: text} and the code width in bytes of a ToUnicode CMap."""
    text = data.decode("latin-1")
    space = re.search(r"begincodespacerange\s*<([0-9A-Fa-f]+)>", text)
    if space:
        width = len(space.group(1)) // 2
    cmap = {}

    def uni(hexstr):
        return bytes.fromhex(hexstr).decode("utf-16-be", errors="replace")
    for block in re.findall(r"beginbfchar(.*?)endbfchar", text, re.S):
        for src, dst in re.findall(r"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]*)>", block):
            cmap[int(src, 16)] = uni(dst)
    for block in re.findall(r"beginbfrange(.*?)endbfrange", text, re.S):
        for lo, hi, dst in re.findall(r"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*(<[0-9A-Fa-f]*>|\[[^\]]*\])", block):
            lo, hi = int(lo, 16), int(hi, 16)
            if dst.startswith("["):
                for code, item in zip(range(lo, hi + 1), re.findall(r"<([0-9A-Fa-f]*)>", dst)):
                    cmap[code] = uni(item)
            else:
                start = bytes.fromhex(dst[1:-1])
                for i, code in enumerate(range(lo, hi + 1)):
                    cmap[code] = (start[:-2] + (int.from_bytes(start[-2:], "big") + i).to_bytes(2, "big")).decode(
                        "utf-16-be", errors="replace")
    return cmap, width


def decode(font, raw):
    _, cmap, width, _ = font
    codes = [int.from_bytes(raw[i:i + width], "big") for i in range(0, len(raw) - width + 1, width)]
    return "".join(cmap.get(code, "\ufffd") for code in codes)


def raw_tex(text):
    """The TeX markers in `text` (text outside code), with some context."""
    return [f"{marker}: ...{text[max(0, i - 30):i + 30]!r}..." for marker in RAW_TEX
            for i in [m.start() for m in re.finditer(re.escape(marker), text)][:3]]


def squash(text):
    """Text compared without whitespace and with straight quotes: PDF text has its own line breaks."""
    text = unicodedata.normalize("NFKC", text)  # ligatures (ﬀ, ﬁ) to letters
    return re.sub(r"\s+", "", text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"')
                  .replace("\u201d", '"').replace("\u00a0", " "))


class Book:
    def __init__(self, path):
        start = time.monotonic()
        self.path = path
        self.pdf = MiniPdf(path.read_bytes())
        pages = self.pdf.pages()
        texts = [self.pdf.page_text(page) for page in pages]
        self.page_texts = [every for every, _ in texts]
        self.text = "\n".join(self.page_texts)
        self.prose = "\n".join(prose for _, prose in texts)
        self.outline = self.pdf.outline()
        self.images = self.pdf.images()
        self.seconds = time.monotonic() - start


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
<img alt="a small picture" src="data:image/png;base64,{png}"></body></html>"""


def test_pdf_checks_catch_raw_tex_and_count_images_and_outline(browser, tmp_path):
    """Control: a page with raw TeX in its prose, TeX in code, one image and two headings, printed by chromium."""
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
    print(f"control: {found}, images {len(with_outline.images)}, outline {with_outline.outline}")
    assert {f.split(":")[0] for f in found} == {"$$", "\\frac{"}  # \sqrt and the second $$ are in code
    assert "\\sqrt{x}" in with_outline.text and "Controlheading" in squash(with_outline.text)
    assert "σ and μ" in with_outline.prose
    assert len(with_outline.images) == 1
    assert with_outline.outline == ["Control heading", "Second heading"] and without.outline == []
