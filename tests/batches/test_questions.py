from __future__ import annotations

from typing import Any

import pytest

from livebatch.batches.questions import Question, rule_broken


def question(**changes: Any) -> Question:
    base: dict[str, Any] = {
        "stem": "A 54-year-old man has chest pain. Which artery is occluded?",
        "options": [
            {"label": label, "text": text}
            for label, text in zip("ABCDE", ["RCA", "LAD", "LCx", "LM", "D1"], strict=True)
        ],
        "answer": "A",
        "explanation": "Inferior leads face the RCA territory.",
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
    ],
)
def test_rules(changes: dict[str, Any], rule: str | None) -> None:
    assert rule_broken(question(**changes), difficulty="medium") == rule
