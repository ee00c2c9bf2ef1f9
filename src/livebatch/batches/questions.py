"""The single-best-answer item a provider must produce, and the rules it must pass to be accepted."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Label = Literal["A", "B", "C", "D", "E"]
Difficulty = Literal["easy", "medium", "hard"]
LABELS: tuple[Label, ...] = ("A", "B", "C", "D", "E")


class Option(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: Label
    text: str


class Question(BaseModel):
    """The JSON schema sent to the model (strict structured output) and the shape we store."""

    model_config = ConfigDict(extra="forbid")

    stem: str
    options: list[Option]
    answer: Label
    explanation: str
    difficulty: Difficulty


def _normalized(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".")


def rule_broken(question: Question, *, difficulty: str) -> str | None:
    """The first rule the item breaks, worded for the person reading the feed; None when it is valid."""
    if not question.stem.strip():
        return "the stem is empty"
    if len(question.options) != len(LABELS):
        return f"expected 5 options (A-E), got {len(question.options)}"
    if tuple(o.label for o in question.options) != LABELS:
        return "options must be labelled A to E, in order"
    seen: dict[str, str] = {}
    for option in question.options:
        text = _normalized(option.text)
        if not text:
            return f"option {option.label} is empty"
        if text in seen:
            return f"options {seen[text]} and {option.label} are identical"
        seen[text] = option.label
    if not question.explanation.strip():
        return "the explanation is empty"
    if question.difficulty != difficulty:
        return f"difficulty is {question.difficulty}, {difficulty} was requested"
    return None
