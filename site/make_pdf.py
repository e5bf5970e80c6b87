"""Print the whole book to one PDF, offline: `make pdf` (which runs this after the single-page build).

Input: Jupyter Book's single-page HTML build of the book, made from the notebooks' stored
outputs (nothing is executed):

    .venv/bin/jupyter-book build . -W -n --keep-going --builder singlehtml --path-output _build/pdf

which writes _build/pdf/_build/singlehtml/. This script serves that folder on 127.0.0.1, opens it in
Debian's chromium through Playwright (never `playwright install`, which downloads a browser), blocks
every request to another host, adds a print stylesheet (no theme header, sidebars or buttons; code
and outputs wrapped, not cut off; each chapter on a new page), a title page and a table of contents,
waits until MathJax has typeset every equation and every font and image is ready, and prints A4 with
a PDF outline (bookmarks) made from the headings.

Output: _build/pdf/bn-book.pdf, copied to _build/html/bn-book.pdf when the site is built (the intro
page links to it). Re-running is cheap: the print is skipped when the single page, its images and this
script are unchanged since the last PDF (their hash is kept in _build/pdf/bn-book.pdf.sha256).

    .venv/bin/python site/make_pdf.py [--force] [--skip-without-chromium]

Without /usr/bin/chromium it fails with the install hint (`make book` passes --skip-without-chromium:
it then builds the site without the PDF, except when CI is set). Without a CJK font (`fc-list :lang=zh`)
it warns: the Chinese title of a source then prints as boxes (.ci/run installs fonts-wqy-zenhei).
"""

import argparse
import contextlib
import functools
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SINGLE = ROOT / "_build" / "pdf" / "_build" / "singlehtml"
PDF = ROOT / "_build" / "pdf" / "bn-book.pdf"
STAMP = PDF.with_name(PDF.name + ".sha256")
SITE_COPY = ROOT / "_build" / "html" / "bn-book.pdf"
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 120_000

# The print stylesheet: the book's content only, on the full width of the page.
PRINT_CSS = """
@page { size: A4; margin: 18mm 16mm 20mm 16mm; }
html, body { font-size: 10pt; background: white !important; }
/* Chromium prints shadows as large bitmaps: none (an id in :not() outranks the theme's classes). */
html { --pst-color-shadow: transparent !important; }
*:not(#pdf-no-id), *:not(#pdf-no-id)::before, *:not(#pdf-no-id)::after { box-shadow: none !important; text-shadow: none !important; }
#jb-print-docs-body, .bd-header, .bd-header-announcement, .bd-sidebar-primary, .bd-sidebar-secondary, .header-article,
.prev-next-area, .bd-footer, .bd-footer-article, .bd-footer-content, footer, .headerlink, .copybtn,
#pst-back-to-top, .search-button-field, .skip-link, .sd-summary-state-marker,
details.hide.above-input, details.hide.below-input, .toggle-details__summary { display: none !important; }
.bd-container, .bd-container__inner, .bd-page-width, .bd-main, .bd-main .bd-content,
.bd-main .bd-content .bd-article-container, .bd-article { max-width: none !important; width: 100% !important;
  margin: 0 !important; padding: 0 !important; display: block !important; }
pre, pre code, div.cell_output pre, .output pre { white-space: pre-wrap !important; overflow-wrap: anywhere;
  word-break: break-word; overflow: visible !important; max-height: none !important; font-size: 8pt; }
div.cell_output pre { font-size: 7.5pt; }  /* a little smaller: printed tables of 110 columns fit on a line */
div.cell_output, .output, .highlight, div.cell_input { overflow: visible !important; max-height: none !important; }
.pst-scrollable-table-container, .table-wrapper { overflow: visible !important; }
table { font-size: 8.5pt; max-width: 100% !important; }
td, th, td code, th code, td span.pre, th span.pre { white-space: normal !important; overflow-wrap: anywhere; }
figcaption, figcaption *, .caption, .caption * { color: #222 !important; font-weight: 400 !important; }  /* not ExtraLight */
img { max-width: 100% !important; height: auto !important; break-inside: avoid; }
figure, div.figure, .cell_output img, div.cell_input, div.cell_output .output { break-inside: avoid; }
mjx-container[display="true"] { overflow: visible !important; max-width: 100%; }
h1, h2, h3, h4 { break-after: avoid; }
span[id^="document-"] + section { break-before: page; }
.bd-main .bd-content .bd-article h1:first-of-type { display: block !important; }  /* the theme hides it in print */
a { color: inherit !important; text-decoration: none !important; }
.pdf-title { break-after: page; text-align: center; padding-top: 30%; }
.pdf-title .pdf-book-title { font-size: 28pt; font-weight: bold; margin-bottom: 1.5em; }
.pdf-title p { font-size: 12pt; margin: 0.4em 0; }
.pdf-toc { break-after: page; font-size: 9.5pt; line-height: 1.35; }
.pdf-toc ol { list-style: none; padding-left: 0; }
.pdf-toc ol ol { padding-left: 2em; }
.pdf-toc li.chapter { margin-top: 0.3em; font-weight: bold; }
.pdf-toc li.section { font-weight: normal; margin-top: 0; }
.pdf-toc .pdf-toc-title { font-size: 18pt; font-weight: bold; margin-bottom: 0.8em; }
"""

# Run in the page: a title page and a table of contents, made from the book's numbered headings
# (chapters are <h2> in the single page, their sections <h3>). Divs, not headings, so that the
# PDF outline, which chromium makes from the headings, lists only the book's own.
FRONT_MATTER_JS = """([title, author]) => {
  const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const chapters = [...article.querySelectorAll('span[id^="document-"] + section')];
  // The intro's headings one level down (h1 to h2, h2 to h3), so that in the PDF outline the intro
  // sits beside the chapters (<h2>) rather than above them.
  const demote = (heading, tag) => {
    const copy = document.createElement(tag);
    for (const attr of heading.attributes) copy.setAttribute(attr.name, attr.value);
    copy.append(...heading.childNodes);
    heading.replaceWith(copy);
  };
  const root = article.querySelector(':scope > section');
  root.querySelectorAll(':scope > section > h2').forEach((h) => demote(h, 'h3'));
  root.querySelectorAll(':scope > h1').forEach((h) => demote(h, 'h2'));
  const front = document.createElement('div');
  const titlePage = document.createElement('div');
  titlePage.className = 'pdf-title';
  titlePage.innerHTML = '<div class="pdf-book-title"></div><p class="pdf-author"></p><p>The whole book as one PDF, '
    + 'printed from the website built from the notebooks and their tested outputs.</p>';
  titlePage.querySelector('.pdf-book-title').textContent = title;
  titlePage.querySelector('.pdf-author').textContent = author;
  const toc = document.createElement('nav');
  toc.className = 'pdf-toc';
  toc.innerHTML = '<div class="pdf-toc-title">Contents</div>';
  const list = document.createElement('ol');
  let headings = 0;
  const entry = (heading, cls) => {
    const li = document.createElement('li');
    li.className = cls;
    const a = document.createElement('a');
    heading.id = heading.id || `pdf-heading-${++headings}`;  // not the section's id: those repeat between chapters
    a.href = '#' + heading.id;
    const copy = heading.cloneNode(true);
    copy.querySelectorAll('.headerlink').forEach((el) => el.remove());
    a.textContent = copy.textContent.trim();
    li.appendChild(a);
    return li;
  };
  const intro = root.querySelector(':scope > h2');
  if (intro) list.appendChild(entry(intro, 'chapter'));
  for (const chapter of chapters) {
    const heading = chapter.querySelector(':scope > h2');
    if (!heading) continue;
    const li = entry(heading, 'chapter');
    const sub = document.createElement('ol');
    for (const section of chapter.querySelectorAll('h3')) {
      if (section.querySelector('.section-number')) sub.appendChild(entry(section, 'section'));
    }
    if (sub.children.length) li.appendChild(sub);
    list.appendChild(li);
  }
  toc.appendChild(list);
  front.append(titlePage, toc);
  article.prepend(front);
  return chapters.length;
}"""

# Run in the page: resolves once MathJax has typeset, every image has decoded and the fonts are ready.
READY_JS = """async () => {
  const within = (promise, what) => Promise.race([promise, new Promise((_, reject) =>
    setTimeout(() => reject(new Error(`${what} not ready after 120 s`)), 120000))]);
  document.querySelectorAll('details').forEach((d) => { d.open = true; });  // exercise solutions
  if (!window.MathJax || !MathJax.startup) throw new Error('MathJax did not load');
  await within(MathJax.startup.promise, 'MathJax');
  const images = [...document.images];
  images.forEach((img) => { img.loading = 'eager'; });
  const broken = [];
  await within(Promise.all(images.map((img) => img.decode().catch(() => broken.push(img.getAttribute('src'))))), 'images');
  await within(document.fonts.ready, 'fonts');
  // What would be cut off at the right edge of the page (the viewport is as wide as the printed text).
  const right = document.querySelector('article.bd-article').getBoundingClientRect().right + 1;
  const wide = [...document.querySelectorAll('pre, table, img, mjx-container, .cell_output > *')]
    .filter((el) => el.getBoundingClientRect().width > 0 && el.getBoundingClientRect().right > right)
    .map((el) => `${el.tagName.toLowerCase()} ${Math.round(el.getBoundingClientRect().right - right)} px: `
                 + el.textContent.trim().slice(0, 60));
  return {images: images.length, broken, equations: document.querySelectorAll('mjx-container').length,
          rawTeX: document.querySelectorAll('mjx-merror').length, wide};
}"""


def die(message):
    sys.exit(f"make_pdf.py: {message}")


def cjk_fonts():
    """The font files fontconfig has for Chinese (`fc-list :lang=zh`); without one, Chinese prints as boxes."""
    try:
        listed = subprocess.run(["fc-list", ":lang=zh", "file"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return sorted({line.strip().rstrip(":") for line in listed.splitlines() if line.strip()})


def source_hash():
    """A hash of what the PDF is printed from: the single page, its images, the scripts and styles it loads
    (the widgets draw themselves when printed), this script and the CJK fonts."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update("\n".join(cjk_fonts()).encode())  # a font installed later prints the Chinese title again
    static = sorted(p for p in (SINGLE / "_static").glob("*") if p.suffix in {".js", ".css"})
    for path in [SINGLE / "book" / "intro.html", *sorted((SINGLE / "_images").glob("*")), *static]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # the browser closing a connection early is not an error of the site


@contextlib.contextmanager
def serve(directory):
    """Serve `directory` on 127.0.0.1 (an ephemeral port); yields the base URL. The site tests
    (tests/site/sitekit.py) serve the built site with it too."""
    httpd = _QuietServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def print_pdf(out):
    from playwright.sync_api import sync_playwright

    # The single page is written as book/intro.html but links its assets as if it were at the
    # root (_static/, _images/): print a copy that sits at the root.
    page_file = SINGLE / "bn-book.html"
    shutil.copyfile(SINGLE / "book" / "intro.html", page_file)
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    foreign = []
    with serve(SINGLE) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            # As wide as the printed text (A4 less the margins, at 96 px per inch), so that the page is laid
            # out as it is printed and anything wider than the page can be found before printing.
            page = browser.new_page(viewport={"width": round((210 - 32) / 25.4 * 96), "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)

            def route(request_route):
                if request_route.request.url.startswith(base):
                    request_route.continue_()
                else:
                    foreign.append(request_route.request.url)
                    request_route.abort()

            page.route("**/*", route)
            page.emulate_media(media="print", color_scheme="light")  # a light page, whatever the site's default mode
            page.goto(base + page_file.name, wait_until="load")
            page.evaluate("() => { document.documentElement.dataset.theme = 'light'; document.documentElement.dataset.mode = 'light'; }")
            page.add_style_tag(content=PRINT_CSS)
            chapters = page.evaluate(FRONT_MATTER_JS, [config["title"], config.get("author", "")])
            ready = page.evaluate(READY_JS)
            if foreign:
                die(f"the page asked for files outside the site (blocked): {foreign[:5]}")
            if ready["broken"]:
                die(f"images that did not load: {ready['broken'][:5]}")
            if ready["rawTeX"]:
                die(f"MathJax could not typeset {ready['rawTeX']} equations")
            for item in ready["wide"]:
                print(f"make_pdf.py: warning: wider than the page, cut off on the right: {item}", file=sys.stderr)
            if chapters < 2:
                die(f"found {chapters} chapters in {page_file}: is the single-page build complete?")
            out.parent.mkdir(parents=True, exist_ok=True)
            page.pdf(path=str(out), format="A4", print_background=True, prefer_css_page_size=True,
                     outline=True, tagged=True, display_header_footer=True,
                     header_template="<span></span>",
                     footer_template='<div style="font-size:8pt;width:100%;text-align:center;color:#555">'
                                     '<span class="pageNumber"></span> / <span class="totalPages"></span></div>')
        finally:
            browser.close()
            page_file.unlink(missing_ok=True)
    return chapters, ready


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="print even if nothing changed since the last PDF")
    parser.add_argument("--skip-without-chromium", action="store_true",
                        help="without chromium, say so and exit 0 instead of failing (`make book`; not when CI is set)")
    args = parser.parse_args()
    if not (SINGLE / "book" / "intro.html").exists():
        die(f"no single-page build in {SINGLE.relative_to(ROOT)}: run `make pdf` (it builds it first)")
    if not CHROMIUM.exists():
        hint = (f"Debian's chromium is not installed ({CHROMIUM}): install it with `sudo apt-get install -y chromium`; "
                "never `playwright install`, which downloads a browser")
        if args.skip_without_chromium and not os.environ.get("CI"):
            print(f"make_pdf.py: no PDF of the book made. {hint}")
            return
        die(hint)
    if not cjk_fonts():
        print("make_pdf.py: warning: no CJK font installed (`fc-list :lang=zh` finds none): the Chinese title of a "
              "source prints as boxes; install one with `sudo apt-get install -y fonts-wqy-zenhei` (.ci/run does)",
              file=sys.stderr)
    digest = source_hash()
    if not args.force and PDF.exists() and STAMP.exists() and STAMP.read_text().strip() == digest:
        PDF.touch()  # checked against the sources just built: newer than they are (tests/site/test_pdf.py looks)
        print(f"{PDF.relative_to(ROOT)} is up to date")
    else:
        start = time.monotonic()
        tmp = PDF.with_name(PDF.name + ".tmp")
        chapters, ready = print_pdf(tmp)
        tmp.replace(PDF)
        STAMP.write_text(digest + "\n")
        print(f"{PDF.relative_to(ROOT)}: {PDF.stat().st_size / 1e6:.1f} MB, {chapters} chapters, {ready['images']} "
              f"images, {ready['equations']} equations, printed in {time.monotonic() - start:.0f} s")
    if SITE_COPY.parent.exists():
        shutil.copyfile(PDF, SITE_COPY)
        print(f"copied to {SITE_COPY.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
