"""Every page of the table of contents, opened in chromium as a first-time reader would.

For each page: HTTP 200, no console error or uncaught exception, no failed request, no
request to any host but the local server (so the site works offline), every image loaded,
every equation typeset by MathJax, captions and alt text on the book's figures, and no
axe-core accessibility violation in the book's own content. A full-page screenshot of each
page goes to the test's temporary folder. The reader here prefers light mode;
test_site_modes.py runs the same check in dark mode.
"""

import json
import re

import pytest
from sitekit import STATS, serve, source_of, toc_pages

# Waits for what a reader waits for: MathJax's first typesetting pass and the web fonts.
SETTLE_JS = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  await document.fonts.ready;
}"""

# What a reader sees. Raw TeX is looked for in visible text outside code: text MathJax did
# not typeset still shows `$$`, `\\(`, `\\[`, `$x$` or a command such as `\\epsilon` (as in a
# cross-reference to a heading with math, unless site/bnbook_site.py typesets it).
INSPECT_JS = r"""async () => {
  const images = [...document.images];
  await Promise.all(images.map(img => { img.loading = 'eager'; return img.decode().catch(() => null); }));
  const math = [...document.querySelectorAll('.math')];
  const raw = [];
  const notText = 'pre, code, script, style, textarea, mjx-container, .highlight';
  const delimiters = /\$\$|\\\(|\\\)|\\\[|\\\]|\\[A-Za-z]{2,}|\$[^\s$][^$]*\$/;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!node.parentElement.closest(notText) && delimiters.test(node.data)) raw.push(node.data.trim().slice(0, 80));
  }
  return {
    theme: document.documentElement.dataset.theme,
    mode: document.documentElement.dataset.mode,
    images: images.map(img => ({
      src: img.getAttribute('src'),
      loaded: img.complete && img.naturalWidth > 0,
      alt: (img.getAttribute('alt') || '').trim(),
      own: !!img.closest('article.bd-article'),
      caption: (img.closest('figure')?.querySelector('figcaption')?.textContent || '').trim(),
    })),
    math: math.length,
    typeset: math.filter(el => el.querySelector('mjx-container')).length,
    raw,
  };
}"""

AXE_JS_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => {
    const el = document.querySelector(n.target[0]);
    const html = el ? el.outerHTML : n.html;
    return {target: n.target.join(' '), html: html.slice(0, 300), own: !!(el && el.closest('article.bd-article'))};
  })}));
}"""

# Violations that sit in the theme's own chrome (header, sidebars), not in this book's content,
# with pydata-sphinx-theme 0.17.1 / sphinx-book-theme 1.3.0: (axe rule, class in the element's markup).
# Any other violation, and any violation inside the page's article, fails the test.
THEME_VIOLATIONS = (
    # The search buttons' aria-label "Search" omits their visible text "Search Ctrl+K".
    ("label-content-name-mismatch", "search-button__button"),
    # The light/dark switch: aria-label "Color mode", while its icon's title is "Light", "Dark"
    # or "System Settings" (mode auto). The same in dark mode (test_site_modes.py).
    ("label-content-name-mismatch", "theme-switch-button"),
    # The book title at the top of the left sidebar is outside every landmark.
    ("region", "sidebar-primary-item"),
    # The left sidebar's expand/collapse toggle of a chapter with section pages: an icon-only <summary>.
    ("summary-name", "toctree-toggle"),
)

MATH_IN_SOURCE = re.compile(r"\$[^$\n]+\$|\\begin\{")


def source_text(page):
    """The prose of a page's source (markdown cells of a notebook), code removed."""
    path = source_of(page)
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    else:
        text = path.read_text()
    text = re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def theme_signature(violation_id, node):
    for rule, css_class in THEME_VIOLATIONS:
        if rule == violation_id and css_class in node["target"] + node["html"]:
            return rule, css_class
    return None


def check_page(tab, log, url, axe_js, screenshot):
    """Open `url` like a reader and list every problem found, by kind (empty lists: none)."""
    response = tab.goto(url, wait_until="load")
    tab.evaluate(SETTLE_JS)
    tab.wait_for_load_state("networkidle")
    seen = tab.evaluate(INSPECT_JS)
    tab.screenshot(path=screenshot, full_page=True, type="jpeg", quality=70)  # JPEG: half the time of PNG
    own_images = [img for img in seen["images"] if img["own"]]
    problems = {
        "HTTP status": [] if response.status == 200 else [response.status],
        "requests outside the site (it must work offline)": log.foreign,
        "console errors": log.errors,
        "failed requests": log.failed,
        "images that did not load": [img["src"] for img in seen["images"] if not img["loaded"]],
        "figures without alt text": [img["src"] for img in own_images if not img["alt"]],
        "alt text that is only a file name": [img["src"] for img in own_images
                                              if re.fullmatch(r"\S+\.(png|jpe?g|svg|gif)", img["alt"], re.I)],
        "images without a figure caption": [img["src"] for img in own_images if not img["caption"]],
        "equations MathJax did not typeset": [seen["math"] - seen["typeset"]] if seen["typeset"] < seen["math"] else [],
        "raw TeX left in the page": seen["raw"],
        "accessibility violations in the book's content": [],
        "accessibility violations outside the content not known to be the theme's": [],
    }
    tab.add_script_tag(path=str(axe_js))
    for violation in tab.evaluate(AXE_JS_RUN):
        for node in violation["nodes"]:
            where = f"{violation['id']} ({violation['help']}): {node['target']}"
            signature = None if node["own"] else theme_signature(violation["id"], node)
            if node["own"]:
                problems["accessibility violations in the book's content"].append(where)
            elif signature is None:
                problems["accessibility violations outside the content not known to be the theme's"].append(where)
            else:
                STATS["theme_a11y"].setdefault(signature[0], set()).add(signature[1])
    return problems, seen


@pytest.mark.parametrize("page", toc_pages())
def test_page_as_a_reader_sees_it(page, page_and_log, server, axe_js, tmp_path):
    tab, log = page_and_log
    shot = tmp_path / f"{page.replace('/', '_')}.jpg"
    problems, seen = check_page(tab, log, f"{server}{page}.html", axe_js, shot)
    found = {kind: items for kind, items in problems.items() if items}
    assert found == {}, "\n".join(f"{kind}:\n  " + "\n  ".join(map(str, items)) for kind, items in found.items())
    if MATH_IN_SOURCE.search(source_text(page)):
        assert seen["math"] > 0, "the source has math but the page has no equations"
    # The site follows the reader's system (default_mode: auto); this reader's prefers light.
    # tests/site/test_site_modes.py opens every page again in dark mode.
    assert (seen["mode"], seen["theme"]) == ("auto", "light")
    assert shot.stat().st_size > 0

    STATS["pages"] += 1
    STATS["images"] += len(seen["images"])
    STATS["equations"] += seen["typeset"]
    STATS["screenshots"].append(str(shot))


BROKEN_PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>A broken page</title>
<script src="https://cdn.invalid/mathjax.js"></script>
<script>console.error("something broke");</script>
</head><body><main><article class="bd-article"><h1>Broken</h1>
<img src="missing.png">
<figure><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" alt="a dot"></figure>
<figure><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" alt="5f0e4bd3.png"><figcaption>A file name is no description</figcaption></figure>
<p>Untypeset: $$x^2$$ and \(y\).</p><span class="math notranslate">\(z\)</span>
</article></main></body></html>
"""


def test_the_page_check_catches_a_broken_page(new_tab, axe_js, tmp_path):
    """Control: a page with every fault the check looks for fails every part of it."""
    site = tmp_path / "broken"
    site.mkdir()
    (site / "index.html").write_text(BROKEN_PAGE)
    with serve(site) as base:
        tab, log = new_tab(base)
        problems, _ = check_page(tab, log, f"{base}index.html", axe_js, tmp_path / "broken.jpg")
    missed = [kind for kind, found in problems.items() if not found]
    assert missed == ["HTTP status", "accessibility violations outside the content not known to be the theme's"]
    assert problems["requests outside the site (it must work offline)"] == ["https://cdn.invalid/mathjax.js"]
    assert any("something broke" in e for e in problems["console errors"])
    assert problems["images that did not load"][0] == "missing.png"
    assert any(v.startswith("image-alt") for v in problems["accessibility violations in the book's content"])
    assert len(problems["alt text that is only a file name"]) == 1
