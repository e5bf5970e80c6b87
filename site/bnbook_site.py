"""Sphinx extension for the book's website: fixes to what readers see.

1. myst-nb writes the toggle of every ``hide-input`` code cell as
   ``<summary aria-label="Toggle hidden content">`` around the visible text "Show code cell
   source". An accessible name that does not contain the visible label fails WCAG 2.5.3
   "Label in Name" (axe-core rule ``label-content-name-mismatch``): a speech-input user who
   says "click show code cell source" cannot reach the control. The same markup is written
   here without the ``aria-label``, so the control's name is the text it shows.
2. A ``{ref}`` to a heading with math in it gets the heading's plain text as its link text,
   which shows the TeX source to the reader ("What \\epsilon does"). Such link text is
   replaced by the heading itself, math included, so MathJax typesets it.
3. With ``default_mode: auto`` (_config.yml) pydata-sphinx-theme 0.17 writes
   ``data-theme="auto"`` into the page, which no style sheet matches (neither its light nor its
   dark colours), and resolves it to "light" or "dark" only in its deferred script: a reader
   whose system prefers dark sees the page flash unstyled white first (the theme's issue
   #1857). On later visits it starts from the theme stored at the last visit, which is stale
   when the system has switched since. A small script at the top of every page resolves the
   theme from the mode (light, dark, or the system's preference for "auto") before the page
   is drawn, as the theme's script does later.
4. The intro pastes chapter 2's training curves with myst-nb's cross-document glue (``{glue:any}``
   with ``:doc:``), which creates a bare image without alt text (the HTML writer then falls back to
   the file name) and does not tell Sphinx that the intro depends on chapter 2. The pasted image gets
   the ``data-alt`` text of the ``<figure>`` around it, and a page that pastes from a notebook is
   rebuilt when that notebook changes.

tests/site/ opens every page in a browser and fails if any of them comes back.
"""

import html
import posixpath
import re

from docutils import nodes
from sphinx.writers.html5 import HTML5Translator
from myst_nb.ext.glue.utils import PendingGlueReference
from myst_nb.sphinx_ import HideCodeCellNode, depart_HideCellInput, visit_HideCellInput
from sphinx.transforms.post_transforms import SphinxPostTransform

_MISMATCHED_LABEL = ' aria-label="Toggle hidden content"'


def visit_hide_cell_input(self, node):
    start = len(self.body)
    visit_HideCellInput(self, node)
    self.body[start:] = [part.replace(_MISMATCHED_LABEL, "") for part in self.body[start:]]


def _titles_with_math(env, docname, cache):
    """{section id: title node} for the sections of `docname` whose title contains math."""
    if docname not in cache:
        titles = {}
        if docname in env.all_docs:
            for section in env.get_doctree(docname).findall(nodes.section):
                title = section.next_node(nodes.title)
                if title is not None and title.parent is section and any(title.findall(nodes.math)):
                    titles.update({section_id: title for section_id in section["ids"]})
        cache[docname] = titles
    return cache[docname]


def typeset_math_in_reference_text(app, doctree, docname):
    suffix = app.builder.config.html_file_suffix or ".html"
    cache = {}
    for ref in list(doctree.findall(nodes.reference)):
        text = ref.children[0] if len(ref.children) == 1 else None
        if not ref.get("internal") or not isinstance(text, nodes.inline) or "std-ref" not in text["classes"]:
            continue
        if "refid" in ref:
            target, anchor = docname, ref["refid"]
        else:
            path, _, anchor = ref.get("refuri", "").partition("#")
            if path and not path.endswith(suffix):
                continue
            target = posixpath.normpath(posixpath.join(posixpath.dirname(docname), path[: -len(suffix)])) if path else docname
        title = _titles_with_math(app.env, target, cache).get(anchor)
        if title is not None and title.astext() == text.astext():
            text.children = []
            text.extend(child.deepcopy() for child in title.children)


_DEPRECATED_ROLE = ' role="doc-biblioentry"'


def visit_citation(self, node):
    """docutils marks each bibliography entry role="doc-biblioentry", a DPUB-ARIA role that
    ARIA 1.3 deprecates (axe-core: aria-deprecated-role, aria-allowed-role, and
    aria-required-children on the enclosing role="list"); the entries are list items."""
    start = len(self.body)
    HTML5Translator.visit_citation(self, node)
    self.body[start:] = [part.replace(_DEPRECATED_ROLE, ' role="listitem"') for part in self.body[start:]]


# Runs in <head>, after the theme's own inline script (which sets data-mode from storage or
# default_mode, and data-theme from storage or default_mode, "auto" included). Sets the theme
# the way the theme's setTheme() will: the mode if it is light or dark, else the system's.
RESOLVE_AUTO_THEME_JS = (
    '{const html = document.documentElement, mode = html.dataset.mode;'
    ' html.dataset.theme = mode === "light" || mode === "dark" ? mode'
    ' : window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";}'
)


DATA_ALT = re.compile(r'<figure\b[^>]*\bdata-alt="([^"]+)"')


class AltTextForPastedFigures(SphinxPostTransform):
    """Give an image pasted from another page (myst-nb's cross-document glue) the alt text of its <figure>."""

    default_priority = 6  # after myst-nb's ReplacePendingGlueReferences (5), which creates the image

    def apply(self, **kwargs):
        for raw in list(self.document.findall(nodes.raw)):
            match = DATA_ALT.search(raw.astext())
            image = raw.next_node(nodes.image, siblings=True) if match else None
            if image is not None and not image.get("alt"):
                image["alt"] = html.unescape(match.group(1))


def depend_on_pasted_pages(app, doctree):
    """A page that pastes glued outputs from a notebook is rebuilt when that notebook changes."""
    for node in doctree.findall(PendingGlueReference):
        app.env.note_dependency(app.env.doc2path(node.refdoc))


def setup(app):
    app.add_js_file(None, body=RESOLVE_AUTO_THEME_JS, priority=1)
    app.setup_extension("myst_nb")  # override its HTML writer, so load it first
    app.add_node(HideCodeCellNode, override=True, html=(visit_hide_cell_input, depart_HideCellInput))
    app.add_node(nodes.citation, override=True, html=(visit_citation, HTML5Translator.depart_citation))
    app.connect("doctree-resolved", typeset_math_in_reference_text)
    app.add_post_transform(AltTextForPastedFigures)
    app.connect("doctree-read", depend_on_pasted_pages)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
