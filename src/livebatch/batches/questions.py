"""The single-best-answer item a provider must produce, the JSON schema a model is held to while it writes
one, and the rules an item must pass to be accepted: structural (its shape) then semantic (it reads as an
exam item). Also the check of a batch's answer keys, which no single item can fail."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Label = Literal["A", "B", "C", "D", "E"]
Difficulty = Literal["easy", "medium", "hard"]
LABELS: tuple[Label, ...] = ("A", "B", "C", "D", "E")

# Bounds of what a model may write, in characters. They go to the model as the schema's `maxLength`, which
# llama.cpp's grammar enforces while it samples (without them a small model wrote 0 to 21 options and ran
# on to the token cap), and are checked again below for servers that take a schema as a hint only.
STEM_CHARS = (20, 1000)
OPTION_CHARS = (1, 160)
EXPLANATION_CHARS = (20, 800)


class Option(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: Label
    text: str


class Question(BaseModel):
    """The shape we store. It has no bounds of its own, so that every item stored so far reads back."""

    model_config = ConfigDict(extra="forbid")

    stem: str
    options: list[Option]
    answer: Label
    explanation: str
    difficulty: Difficulty


def _text(bounds: tuple[int, int]) -> dict[str, Any]:
    return {"type": "string", "minLength": bounds[0], "maxLength": bounds[1]}


def item_schema(difficulty: str) -> dict[str, Any]:
    """The JSON schema of one item at the requested difficulty.

    One schema for every server: llama.cpp turns it into a grammar, OpenAI's strict mode accepts it (every
    property required, no additional properties, `enum`, `minItems`/`maxItems`, and `minLength`/`maxLength`
    since its May 2025 extension). JSON Schema cannot say "labelled A to E, in that order" in a way both
    take (`prefixItems` is llama.cpp's only), so the order is a rule below."""
    option = {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": list(LABELS)}, "text": _text(OPTION_CHARS)},
        "required": ["label", "text"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "stem": _text(STEM_CHARS),
            "options": {"type": "array", "items": option, "minItems": len(LABELS), "maxItems": len(LABELS)},
            "answer": {"type": "string", "enum": list(LABELS)},
            "explanation": _text(EXPLANATION_CHARS),
            "difficulty": {"type": "string", "enum": [difficulty]},
        },
        "required": ["stem", "options", "answer", "explanation", "difficulty"],
        "additionalProperties": False,
    }


def _normalized(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".")


def _too_long(what: str, text: str, bounds: tuple[int, int]) -> str | None:
    return f"{what} is longer than {bounds[1]} characters" if len(text) > bounds[1] else None


def structural_rule_broken(question: Question, *, difficulty: str) -> str | None:
    """The first rule of the item's shape that it breaks; None when it is well-formed."""
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
    lengths = [("the stem", question.stem, STEM_CHARS), ("the explanation", question.explanation, EXPLANATION_CHARS)]
    lengths += [(f"option {o.label}", o.text, OPTION_CHARS) for o in question.options]
    return next((broken for args in lengths if (broken := _too_long(*args))), None)


# An option that stands in for an answer instead of being one: a bare label or number ("B", "Option 2"),
# nothing but digits, a file name, or a filler word. What a small model writes when it copies the schema.
_PLACEHOLDERS = (
    re.compile(r"\(?(option|answer|choice)?\s*[a-e1-9]?\s*[.):]?", re.IGNORECASE),
    re.compile(r"[\d\s.,:;%/+\-]+"),
    re.compile(r"\S+\.(txt|pdf|docx?|csv|json|xml|html?|md|png|jpe?g|gif|svg|py|js|zip|gguf)", re.IGNORECASE),
    re.compile(r"(\.\.\.|…|n/a|tbd|todo|text|string|placeholder|lorem ipsum.*|x+|option text)", re.IGNORECASE),
)
_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    "the and for with from that this than into onto over under its their which what most least none all of "
    "a an to in on at by or is are be as no not".split()
)


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) >= 3 and w not in _STOPWORDS}


def _same_word(a: str, b: str) -> bool:
    """One word, give or take an ending: "amyloid" and "amyloidosis", "rupture" and "ruptured"."""
    shorter = min(len(a), len(b))
    return a == b or (shorter >= 5 and a[:shorter] == b[:shorter])


def _mentions_key(question: Question) -> bool:
    """The explanation names the keyed option: by its letter ("B is correct", "option B", "(B)"), or by a word
    of its text that no other option has (all of its words when it has none of its own)."""
    key = question.answer
    if re.search(rf"\b(?i:option|answer|choice)\s+{key}\b|\({key}\)|\b{key}\s+is\b", question.explanation):
        return True
    by_label = {o.label: _words(o.text) for o in question.options}
    others = set().union(*(words for label, words in by_label.items() if label != key))
    own = by_label.get(key, set())
    wanted = (own - others) or own
    said = _words(question.explanation)
    return any(_same_word(w, s) for w in wanted for s in said)


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def semantic_rule_broken(question: Question) -> str | None:
    """The first sign that a well-formed item does not read as an exam item; None when none shows."""
    if not question.stem.rstrip().endswith("?"):
        return "the stem is not a question (it does not end with a question mark)"
    for option in question.options:
        text = option.text.strip()
        if any(p.fullmatch(text) for p in _PLACEHOLDERS):
            return f'option {option.label} is a placeholder ("{_short(text)}"), not an answer'
    if not _mentions_key(question):
        keyed = next((o.text for o in question.options if o.label == question.answer), "")
        return f'the explanation does not mention the keyed option {question.answer} ("{_short(keyed)}")'
    return None


def rule_broken(question: Question, *, difficulty: str) -> str | None:
    """The first rule the item breaks, worded for the person reading the feed; None when it is valid."""
    return structural_rule_broken(question, difficulty=difficulty) or semantic_rule_broken(question)


def answer_key_skew(keys: Mapping[Label, int], *, alpha: float = 0.01) -> str | None:
    """Why a batch's answer keys look lopsided, or None when they could be chance.

    Flagged when the most frequent letter comes up so often that a uniform key (each letter 1 in 5) would
    give that many less than `alpha` of the time, for any of the five letters (a binomial tail, times 5):
    5 of 5, 7 of 10 or 33 of 100 items keyed alike are flagged; 4 of 5, 6 of 10 or 32 of 100 are not."""
    total = sum(keys.values())
    if total == 0:
        return None
    letter, top = max(sorted(keys.items()), key=lambda kv: kv[1])
    tail = sum(math.comb(total, k) * 0.2**k * 0.8 ** (total - k) for k in range(top, total + 1))
    if len(LABELS) * tail >= alpha:
        return None
    return (
        f"{top} of {total} items ({round(100 * top / total)} %) are keyed {letter}: "
        "far more than chance, so students could learn to guess the key"
    )
