"""Figures a notebook shows and another page reuses.

:func:`glue_figure` shows a matplotlib figure as the cell's output and marks that output
with a name, the way ``myst_nb.glue`` does, so that another page of the book can paste
the very figure the chapter computed (the intro page shows chapter 2's training curves
with ``{glue:any}`` and its ``:doc:`` option). It writes the marker itself, so a reader's
environment (Colab, Binder) needs no ``myst_nb``.

Chapters: 2.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["GLUE_METADATA_KEY", "glue_figure"]

GLUE_METADATA_KEY = "scrapbook"   # the output metadata myst-nb reads glued values from


def glue_figure(name: str, fig: Any, *, display: Callable[..., Any] | None = None) -> None:
    """Show ``fig`` once as the cell's output, glued under ``name``, and close it.

    The output is the figure's ordinary display (PNG and text), so the chapter shows it as usual,
    with the cell's caption; myst-nb also stores it under ``name`` for other pages.
    It returns nothing, so a call on a cell's last line adds no second output (myst-nb would give the
    cell's figure caption and name to each output). ``display`` replaces IPython's display function (for tests).
    """
    if not isinstance(name, str) or not name:
        raise ValueError("name must be a non-empty string")
    import IPython
    import matplotlib.pyplot as plt

    bundle, metadata = IPython.core.formatters.format_display_data(fig)
    metadata = dict(metadata)
    metadata[GLUE_METADATA_KEY] = {"name": name, "mime_prefix": ""}
    if display is None:
        from IPython.display import display
    display(bundle, raw=True, metadata=metadata)
    plt.close(fig)
