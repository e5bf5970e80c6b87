"""Sphinx extension for the book's website: one accessibility fix to generated markup.

myst-nb writes the toggle of every ``hide-input`` code cell as
``<summary aria-label="Toggle hidden content">`` around the visible text "Show code cell
source". An accessible name that does not contain the visible label fails WCAG 2.5.3
"Label in Name" (axe-core rule ``label-content-name-mismatch``): a speech-input user who
says "click show code cell source" cannot reach the control. This extension writes the
same markup without the ``aria-label``, so the control's name is the text it shows.
tests/site/ runs axe-core on every page and fails if the mismatch comes back.
"""

from myst_nb.sphinx_ import HideCodeCellNode, depart_HideCellInput, visit_HideCellInput

_MISMATCHED_LABEL = ' aria-label="Toggle hidden content"'


def visit_hide_cell_input(self, node):
    start = len(self.body)
    visit_HideCellInput(self, node)
    self.body[start:] = [part.replace(_MISMATCHED_LABEL, "") for part in self.body[start:]]


def setup(app):
    app.setup_extension("myst_nb")  # override its HTML writer, so load it first
    app.add_node(HideCodeCellNode, override=True, html=(visit_hide_cell_input, depart_HideCellInput))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
