"""Rule conditions: every operator, names checked at compile time, nothing executed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.alerting.condition import ConditionError, compile_condition

NAMES = ("score", "calls", "calls_1h")
SIGNALS = ("distribution_probing", "template_sweep")
COLS = {
    "score": np.array([10.0, 70.0, 90.0, 70.0]),
    "calls": np.array([5.0, 200.0, 50.0, 0.0]),
    "calls_1h": np.array([100.0, 100.0, 3.0, 0.0]),
    "signal.distribution_probing": np.array([0.0, 0.8, 60.0, 0.5]),
}


def run(text: str, **params: float) -> list[bool]:
    cond = compile_condition(text, NAMES, signals=SIGNALS, params=params)
    return cond({k: COLS[k] for k in cond.columns}, 4).tolist()


@pytest.mark.parametrize("text, expected", [
    ("score >= 70", [False, True, True, True]),
    ("score > 70", [False, False, True, False]),
    ("score <= 70", [True, True, False, True]),
    ("score < 70", [True, False, False, False]),
    ("score == 70", [False, True, False, True]),
    ("score != 70", [True, False, True, False]),
    ("score >= 70 and calls >= 100", [False, True, False, False]),
    ("score >= 90 or calls < 10", [True, False, True, True]),
    ("not score >= 70", [True, False, False, False]),
    ("not (score >= 70 and calls_1h >= 100)", [True, False, True, True]),
    ("10 <= calls < 100", [False, False, True, False]),
    ("signal.distribution_probing >= 0.8 and calls_1h >= 100", [False, True, False, False]),
    ("score >= -1", [True, True, True, True]),
    ("1 < 2", [True, True, True, True]),
    ("(score >= 70) and ((calls > 100) or (calls_1h < 10))", [False, True, True, True]),
])
def test_every_operator_evaluates_over_whole_columns(text: str, expected: list[bool]) -> None:
    assert run(text) == expected


def test_params_are_constants_and_only_read_columns_are_listed() -> None:
    assert run("score >= threshold", threshold=80) == [False, False, True, False]
    cond = compile_condition("score >= threshold and signal.template_sweep > 0", NAMES, signals=SIGNALS,
                             params={"threshold": 80})
    assert cond.columns == ("score", "signal.template_sweep")


@pytest.mark.parametrize("text, fragment", [
    ("scor >= 70", "unknown name 'scor'"),
    ("signal.nope >= 1", "unknown signal 'nope'"),
    ("score >= 70 and", "invalid syntax"),
    ("score", "is a number, not a condition"),
    ("score and calls", "is a number where a condition is expected"),
    ("(score >= 1) >= 2", "is a condition where a number is expected"),
    ("score + 1 >= 2", "is not allowed"),
    ("score >= '70'", "only numbers"),
    ("score >= True", "only numbers"),
    ("score in (1, 2)", "operator In is not allowed"),
    ("score is 1", "operator Is is not allowed"),
    ("score.real >= 1", "is not allowed"),
    ("calls[0] >= 1", "is not allowed"),
    ("(lambda: 1)() >= 1", "is not allowed"),
    ("__import__('os').system('true') >= 0", "is not allowed"),
])
def test_anything_outside_the_language_is_refused_naming_it(text: str, fragment: str) -> None:
    with pytest.raises(ConditionError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        compile_condition(text, NAMES, signals=SIGNALS)


def test_signals_are_refused_where_the_subject_has_none() -> None:
    with pytest.raises(ConditionError, match="signals are not available"):
        compile_condition("signal.template_sweep > 1", NAMES, signals=None)


def test_compiling_never_runs_the_text(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    for text in (f"open({str(target)!r}, 'w').write('x') >= 0", f"[open({str(target)!r}, 'w')] == 1"):
        with pytest.raises(ConditionError):
            compile_condition(text, NAMES)
    assert not target.exists()


def test_depth_and_length_are_bounded() -> None:
    with pytest.raises(ConditionError, match="nested deeper"):
        compile_condition("not " * 40 + "score >= 1", NAMES)
    with pytest.raises(ConditionError, match="longer than"):
        compile_condition("score >= 1 and " * 200 + "score >= 1", NAMES)
