from __future__ import annotations

from typing import Any

import pytest

from livebatch.batches.questions import Label, Question, answer_key_skew, rule_broken

RCA_EXPLANATION = "Inferior leads face the RCA territory."


def question(**changes: Any) -> Question:
    base: dict[str, Any] = {
        "stem": "A 54-year-old man has chest pain. Which artery is occluded?",
        "options": [
            {"label": label, "text": text}
            for label, text in zip("ABCDE", ["RCA", "LAD", "LCx", "LM", "D1"], strict=True)
        ],
        "answer": "A",
        "explanation": RCA_EXPLANATION,
        "difficulty": "medium",
    }
    base.update(changes)
    return Question.model_validate(base)


def options(*texts: str) -> list[dict[str, str]]:
    return [{"label": label, "text": text} for label, text in zip("ABCDE", texts, strict=False)]


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({}, None),
        ({"stem": "   "}, "the stem is empty"),
        ({"options": options("a", "b", "c", "d")}, "expected 5 options (A-E), got 4"),
        (
            {"options": [{"label": label, "text": t} for label, t in zip("ABCED", "vwxyz", strict=True)]},
            "options must be labelled A to E, in order",
        ),
        ({"options": options("a", "", "c", "d", "e")}, "option B is empty"),
        ({"options": options("a", "Mitral stenosis", "c", "mitral  stenosis.", "e")}, "options B and D are identical"),
        ({"explanation": ""}, "the explanation is empty"),
        ({"difficulty": "hard"}, "difficulty is hard, medium was requested"),
        ({"stem": "Which artery? " + "x" * 1000}, "the stem is longer than 1000 characters"),
        ({"explanation": "RCA. " + "y" * 800}, "the explanation is longer than 800 characters"),
        ({"options": options("RCA", "LAD", "z" * 161, "LM", "D1")}, "option C is longer than 160 characters"),
    ],
)
def test_structural_rules(changes: dict[str, Any], rule: str | None) -> None:
    assert rule_broken(question(**changes), difficulty="medium") == rule


PLACEHOLDER = 'option C is a placeholder ("{}"), not an answer'


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        # The stem must ask something.
        (
            {"stem": "A 54-year-old man has chest pain."},
            "the stem is not a question (it does not end with a question mark)",
        ),
        (
            {"stem": "Which artery is occluded? The ECG shows ST elevation."},
            "the stem is not a question (it does not end with a question mark)",
        ),
        ({"stem": "Which artery is occluded ?  "}, None),
        # An option must be an answer, not what stands in for one.
        *[
            ({"options": options("RCA", "LAD", text, "LM", "D1")}, PLACEHOLDER.format(text))
            for text in (
                "C",
                "c.",
                "Option C",
                "answer 3",
                "(C)",
                "42",
                "3.5",
                "12 / 15",
                "figure1.png",
                "notes.txt",
                "…",
                "N/A",
                "TBD",
                "text",
                "Lorem ipsum dolor",
                "xxx",
            )
        ],
        *[
            ({"options": options("RCA", "LAD", text, "LM", "D1")}, None)
            for text in ("Vitamin B12", "120/80 mmHg", "5 mg of atropine", "Type 2 diabetes", "IgA", "Na+/K+-ATPase")
        ],
        # The explanation must be about the keyed option: by its words, or by its letter.
        (
            {"explanation": "The LAD supplies the anterior wall."},
            'the explanation does not mention the keyed option A ("RCA")',
        ),
        ({"explanation": "Inferior leads face the rca territory."}, None),
        ({"explanation": "A is correct: inferior leads."}, None),
        ({"explanation": "The answer is option A, by the leads."}, None),
        ({"explanation": "Inferior leads (A) face it."}, None),
        (
            {"explanation": "A patient with inferior ST elevation."},
            'the explanation does not mention the keyed option A ("RCA")',
        ),
        # A word of the key's own, give or take an ending; words every option shares do not count.
        (
            {
                "options": options(
                    "Cardiac amyloidosis", "Cardiac sarcoidosis", "Haemochromatosis", "Myocarditis", "Fibrosis"
                ),
                "explanation": "Congo red staining identifies amyloid.",
            },
            None,
        ),
        (
            {
                "options": options(
                    "Cardiac amyloidosis", "Cardiac sarcoidosis", "Haemochromatosis", "Myocarditis", "Fibrosis"
                ),
                "explanation": "A cardiac biopsy settles it.",
            },
            'the explanation does not mention the keyed option A ("Cardiac amyloidosis")',
        ),
    ],
)
def test_semantic_rules(changes: dict[str, Any], rule: str | None) -> None:
    assert rule_broken(question(**changes), difficulty="medium") == rule


def test_a_structural_rule_is_named_before_a_semantic_one() -> None:
    broken = question(stem="No question here.", options=options("A", "B", "C", "D"))
    assert rule_broken(broken, difficulty="medium") == "expected 5 options (A-E), got 4"


@pytest.mark.parametrize(
    ("keys", "flag"),
    [
        ({}, None),
        ({"A": 1}, None),
        ({"A": 3}, None),
        ({"A": 5}, "5 of 5 items (100 %) are keyed A: far more than chance, so students could learn to guess the key"),
        ({"A": 4, "B": 1}, None),
        ({"A": 6, "B": 1, "C": 1, "D": 1, "E": 1}, None),
        (
            {"C": 7, "B": 1, "D": 1, "E": 1},
            "7 of 10 items (70 %) are keyed C: far more than chance, so students could learn to guess the key",
        ),
        (
            {"A": 9, "B": 1},
            "9 of 10 items (90 %) are keyed A: far more than chance, so students could learn to guess the key",
        ),
        ({"A": 22, "B": 20, "C": 19, "D": 21, "E": 18}, None),
        ({"A": 32, "B": 17, "C": 17, "D": 17, "E": 17}, None),
        (
            {"A": 33, "B": 17, "C": 17, "D": 17, "E": 16},
            "33 of 100 items (33 %) are keyed A: far more than chance, so students could learn to guess the key",
        ),
    ],
)
def test_a_lopsided_answer_key_is_flagged_only_beyond_chance(keys: dict[Label, int], flag: str | None) -> None:
    assert answer_key_skew(keys) == flag
