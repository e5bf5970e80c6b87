"""nbval with declared tolerances, for the few cells whose printed numbers are chaotic by nature.

nbval compares a cell's fresh output with the stored one, text for text. A cell
that prints the result of a chaotic computation (a training run whose last digits
depend on the CPU's round-off, see the README's "Writing a chapter") may declare a
tolerance in its metadata instead::

    "bnbook": {"tolerance": {"rtol": 0.15, "atol": 0.05,
                             "reason": "tanh without BN under Adam is chaotic: ..."}}

Then the fresh output passes if, in every text output, the text between the
numbers is identical and every number ``a`` is within ``atol + rtol * |b|`` of
the stored number ``b``. Anything else (a different word, a missing line, a
number beyond the tolerance, an image, an error) fails as in plain nbval, with
the numbers beyond the tolerance listed. ``reason`` must say why the cell is
chaotic; ``tests/test_book.py`` checks that every declaration has one and that
such cells stay few.

Loaded by pytest as a plugin (``-p nbval_tolerance`` in ``pyproject.toml``).
"""

from __future__ import annotations

import copy
import re

NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan)")
TEXT_KEYS = ("text/plain",)


def tolerance_of(metadata) -> dict | None:
    """The cell's declared tolerance, validated: ``{"rtol", "atol", "reason"}``, or None."""
    spec = (metadata or {}).get("bnbook", {}).get("tolerance")
    if spec is None:
        return None
    if not isinstance(spec, dict) or not str(spec.get("reason", "")).strip():
        raise ValueError(f"a tolerance needs a 'reason' saying why the cell is chaotic, got {spec!r}")
    rtol, atol = float(spec.get("rtol", 0.0)), float(spec.get("atol", 0.0))
    if rtol < 0 or atol < 0 or rtol + atol == 0:
        raise ValueError(f"a tolerance needs rtol >= 0 and atol >= 0, not both 0, got {spec!r}")
    lines = spec.get("lines")
    if lines is not None:
        re.compile(lines)
    return {"rtol": rtol, "atol": atol, "lines": lines, "reason": spec["reason"]}


def _words(text: str) -> list[str]:
    """The text between the numbers, without spaces (NumPy pads arrays to the widest number: "0.5 " vs "0.47")."""
    return [re.sub(r"[ \t]+", "", part) for part in NUMBER.split(text)]


def _layout(line: str) -> str:
    """A line without its padding: spaces removed, rules of dashes shortened (a table's column widths
    follow its widest cell, which may be a chaotic one)."""
    return re.sub(r"-{2,}", "--", re.sub(r"[ \t]+", "", line))


def mismatches(test: str, ref: str, rtol: float, atol: float, lines: str | None = None) -> list[str]:
    """Why ``test`` is not ``ref`` within the tolerance (on the ``lines`` of ``ref`` that match); empty when it is."""
    if lines is not None:
        test_lines, ref_lines = test.split("\n"), ref.split("\n")
        if len(test_lines) != len(ref_lines):
            return [f"{len(test_lines)} lines vs {len(ref_lines)} stored"]
        found = []
        for t, r in zip(test_lines, ref_lines):
            if re.search(lines, r):
                found += mismatches(t, r, rtol, atol)
            elif _layout(t) != _layout(r):
                found.append(f"a line outside the tolerance differs: {t!r} vs stored {r!r}")
        return found
    if _words(test) != _words(ref):
        return ["the text around the numbers differs"]
    found = []
    for a, b in zip(NUMBER.findall(test), NUMBER.findall(ref)):
        x, y = float(a), float(b)
        if x == y or (x != x and y != y):  # equal, or both NaN
            continue
        if not abs(x - y) <= atol + rtol * abs(y):
            found.append(f"{a} vs stored {b} (allowed: {atol:g} + {rtol:g} x |{b}|)")
    return found


def _texts(output: dict):
    """(container, key) pairs that hold an output's text."""
    if output.get("output_type") == "stream":
        yield output, "text"
    for key in TEXT_KEYS:
        if key in output.get("data", {}):
            yield output["data"], key


def _joined(value) -> str:
    return "".join(value) if isinstance(value, list) else value


def within_tolerance(test_outputs: list, ref_outputs: list, spec: dict) -> tuple[list, list[str]]:
    """Return the test outputs with each text replaced by the stored one where it is
    within the tolerance (so that nbval's exact comparison passes), and the mismatches."""
    test_outputs = copy.deepcopy(test_outputs)
    problems = []
    if len(test_outputs) != len(ref_outputs):
        return test_outputs, [f"{len(test_outputs)} outputs vs {len(ref_outputs)} stored"]
    for t, r in zip(test_outputs, ref_outputs):
        for (t_box, t_key), (r_box, r_key) in zip(_texts(t), _texts(r)):
            found = mismatches(_joined(t_box[t_key]), _joined(r_box[r_key]), spec["rtol"], spec["atol"],
                               spec.get("lines"))
            if found:
                problems += found
            else:
                t_box[t_key] = copy.deepcopy(r_box[r_key])
    return test_outputs, problems


def pytest_configure(config):
    try:
        from nbval import plugin
    except ImportError:  # nbval not installed: nothing to extend
        return
    if getattr(plugin.IPyNbCell.compare_outputs, "_bnbook_tolerance", False):
        return
    original = plugin.IPyNbCell.compare_outputs

    def compare_outputs(self, test, ref, skip_compare=None):
        spec = tolerance_of(self.cell.metadata)
        if spec is None:
            return original(self, test, ref, skip_compare)
        test, problems = within_tolerance(test, ref, spec)
        same = original(self, test, ref, skip_compare)
        if not same and problems:
            self.comparison_traceback.append("beyond the declared tolerance: " + "; ".join(problems))
        return same

    compare_outputs._bnbook_tolerance = True
    plugin.IPyNbCell.compare_outputs = compare_outputs
