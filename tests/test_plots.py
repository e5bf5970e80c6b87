"""bnhelpers.reporting.plots: a figure shown once and marked for myst-nb's glue."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from bnhelpers.reporting.plots import GLUE_METADATA_KEY, glue_figure


@pytest.fixture(autouse=True)
def png_formatter():
    """What a Jupyter kernel with matplotlib's inline backend has: figures display as PNG."""
    from IPython.core.interactiveshell import InteractiveShell
    from matplotlib_inline.backend_inline import set_matplotlib_formats
    InteractiveShell.instance()
    set_matplotlib_formats("png")


def test_glue_figure_shows_the_png_once_with_myst_nb_marker_and_closes_it():
    calls = []
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    assert glue_figure("fig-key", fig, display=lambda *a, **k: calls.append((a, k))) is None
    assert len(calls) == 1
    (shown,), options = calls[0]
    assert options["raw"] is True
    assert options["metadata"][GLUE_METADATA_KEY] == {"name": "fig-key", "mime_prefix": ""}
    assert "image/png" in shown and "text/plain" in shown
    assert not plt.fignum_exists(fig.number)


def test_glue_figure_matches_what_myst_nb_extracts():
    myst_glue = pytest.importorskip("myst_nb.ext.glue")
    from nbformat.v4 import new_code_cell, new_output
    captured = []
    fig, _ = plt.subplots()
    glue_figure("landing", fig, display=lambda bundle, raw, metadata: captured.append((bundle, metadata)))
    bundle, metadata = captured[0]
    cell = new_code_cell(outputs=[new_output("display_data", data=bundle, metadata=metadata)])
    (key, output), = myst_glue.extract_glue_data_cell(cell)
    assert key == "landing" and "image/png" in output["data"]
    assert len(cell.outputs) == 1            # still shown on the chapter's page


def test_glue_figure_rejects_an_empty_name():
    fig, _ = plt.subplots()
    with pytest.raises(ValueError):
        glue_figure("", fig, display=lambda *a, **k: None)
    plt.close(fig)
