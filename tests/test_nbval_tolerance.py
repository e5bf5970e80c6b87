"""The declared-tolerance comparator for chaotic cells (tests/nbval_tolerance.py), with controls."""

import pytest

from nbval_tolerance import mismatches, tolerance_of, within_tolerance

SPEC = {"rtol": 0.1, "atol": 0.01, "lines": None, "reason": "chaotic"}


def stream(text):
    return {"output_type": "stream", "name": "stdout", "text": text}


def test_numbers_within_the_tolerance_pass_and_take_the_stored_text():
    ref = [stream("final cost 80.0 | share [0.   0.4  0.5 ]\n")]
    test = [stream("final cost 84.8 | share [0.   0.43 0.47]\n")]
    normalized, problems = within_tolerance(test, ref, SPEC)
    assert problems == []
    assert normalized == ref
    assert test[0]["text"].startswith("final cost 84.8")  # the input is not modified


def test_a_number_beyond_the_tolerance_fails_and_is_named():
    problems = mismatches("final cost 95.1\n", "final cost 80.0\n", 0.1, 0.01)
    assert len(problems) == 1 and "95.1 vs stored 80.0" in problems[0]


@pytest.mark.parametrize("test", ["final loss 80.0\n", "final cost 80.0 81.0\n", "final cost\n", "final cost nan\n"])
def test_other_text_or_other_numbers_of_numbers_fail(test):
    assert mismatches(test, "final cost 80.0\n", 0.1, 0.01)


def test_exponents_signs_and_nan():
    assert mismatches("-1.05e+03 nan\n", "-1.0e+03 nan\n", 0.1, 0.0) == []
    assert mismatches("1.05e+04\n", "1.0e+03\n", 0.1, 0.0)


def test_rich_outputs_compare_their_text():
    ref = [{"output_type": "execute_result", "data": {"text/plain": "array([1.0, 2.0])"}, "metadata": {}}]
    test = [{"output_type": "execute_result", "data": {"text/plain": "array([1.05, 2.0])"}, "metadata": {}}]
    assert within_tolerance(test, ref, SPEC) == (ref, [])
    assert within_tolerance(test + test, ref, SPEC)[1] == ["2 outputs vs 1 stored"]


@pytest.mark.parametrize("spec", [{"rtol": 0.1}, {"rtol": 0.1, "reason": " "}, {"reason": "x"},
                                  {"rtol": -1, "reason": "x"}, "0.1"])
def test_a_declaration_needs_a_reason_and_a_positive_tolerance(spec):
    with pytest.raises(ValueError):
        tolerance_of({"bnbook": {"tolerance": spec}})


def test_cells_without_a_declaration_are_left_to_nbval():
    assert tolerance_of({}) is None and tolerance_of({"tags": ["hide-input"]}) is None
    assert tolerance_of({"bnbook": {"tolerance": SPEC}}) == SPEC


def test_lines_limit_the_tolerance_to_the_chaotic_rows():
    ref = "BN    | 93.4 ± 0.8\nno BN | 59.3 ± 14.3\n"
    assert mismatches("BN    | 93.4 ± 0.8\nno BN | 61.0 ± 12.7\n", ref, 0.2, 3.0, lines="^no BN") == []
    found = mismatches("BN    | 93.5 ± 0.8\nno BN | 61.0 ± 12.7\n", ref, 0.2, 3.0, lines="^no BN")
    assert len(found) == 1 and "outside the tolerance" in found[0]         # control: BN's row stays exact
    assert mismatches("BN    | 93.4 ± 0.8\n", ref, 0.2, 3.0, lines="^no BN")


def test_a_wider_chaotic_cell_may_widen_the_table():
    ref = "a | BN\n--+----------\n1 | 9.9 ± 2.5\n"
    test = "a | BN\n--+-----------\n1 | 10.4 ± 2.5\n"
    assert mismatches(test, ref, 0.1, 0.0, lines="^1 ") == []
    assert mismatches(test.replace("a |", "b |"), ref, 0.1, 0.0, lines="^1 ")   # control: words still count
