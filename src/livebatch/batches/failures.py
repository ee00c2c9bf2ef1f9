"""Failed items grouped by cause: their `errorKind` and their message with what differs from item to item taken
out, so that "options B and D are identical" and "options A and C are identical" are one group.

Pure: values in, values out. The rule table is small on purpose; each rule names a part of a message that
depends on the item or the attempt rather than on the cause. A group's `key` is short and stable while the
table is: a client sends it back to retry that group (`POST .../retry-failed` with `{"groups": [key]}`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# What stands for a part taken out of a message, in the group's `message`.
GAP = "…"

# (what, pattern, replacement), applied in order. Quoted values first (they may hold anything), numbers last
# (durations and option letters are numbers and letters with a meaning of their own).
RULES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("quoted value", re.compile(r"'[^']*'|\"[^\"]*\""), f"'{GAP}'"),
    ("detail in parentheses at the end", re.compile(r"\s*\([^()]*\)\s*\.?$"), f" ({GAP})"),
    ("id", re.compile(r"\b[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}\b", re.IGNORECASE), GAP),
    ("option letters", re.compile(r"\b(options?) [A-E](?:(?:, | and | or |, and )[A-E])*\b"), rf"\1 {GAP}"),
    ("duration", re.compile(r"\b\d+(?:\.\d+)?\s?(?:ms|s|sec|seconds?|min|minutes?)\b"), GAP),
    ("difficulty", re.compile(r"\b(?:easy|medium|hard)\b"), GAP),
    ("number", re.compile(r"\b\d+(?:\.\d+)?\b"), GAP),
)
UNKNOWN_KIND = "internal"
UNKNOWN_MESSAGE = "Unknown error"


@dataclass(frozen=True, slots=True)
class FailureCount:
    """How many failed items share one exact (kind, message): a row of the database's GROUP BY."""

    error_kind: str | None
    error_message: str | None
    count: int


@dataclass(frozen=True, slots=True)
class FailureGroup:
    key: str
    error_kind: str
    message: str  # the message with the parts that vary shown as GAP
    example: str  # the most frequent message of the group, as an item showed it
    count: int


def normalize(message: str) -> str:
    """The message with the parts that vary from item to item taken out."""
    text = " ".join(message.split())
    for _, pattern, replacement in RULES:
        text = pattern.sub(replacement, text)
    return text


def group_key(error_kind: str, message: str) -> str:
    """`<kind>-<10 hex>`: the kind, readable, and a digest of the normalized message."""
    digest = hashlib.sha256(normalize(message).encode()).hexdigest()[:10]
    return f"{error_kind}-{digest}"


def group_failures(counts: Iterable[FailureCount]) -> list[FailureGroup]:
    """Groups by kind and normalized message, the largest first (then by kind and message, for a stable order)."""
    totals: dict[str, int] = {}
    examples: dict[str, tuple[int, str]] = {}
    kinds: dict[str, str] = {}
    for row in counts:
        kind, message = _kind_and_message(row)
        key = group_key(kind, message)
        totals[key] = totals.get(key, 0) + row.count
        kinds[key] = kind
        best = examples.get(key)
        if best is None or (row.count, message) > best:
            examples[key] = (row.count, message)
    groups = [
        FailureGroup(
            key=key,
            error_kind=kinds[key],
            message=normalize(examples[key][1]),
            example=examples[key][1],
            count=total,
        )
        for key, total in totals.items()
    ]
    return sorted(groups, key=lambda g: (-g.count, g.error_kind, g.message))


def matching(
    counts: Iterable[FailureCount], *, kinds: Sequence[str] | None = None, keys: Sequence[str] | None = None
) -> list[tuple[str | None, str | None]]:
    """The exact (kind, message) pairs of the failures that a filter selects: of one of `kinds` (when given)
    and in one of the groups `keys` (when given)."""
    selected = []
    for row in counts:
        kind, message = _kind_and_message(row)
        if kinds is not None and kind not in kinds:
            continue
        if keys is not None and group_key(kind, message) not in keys:
            continue
        selected.append((row.error_kind, row.error_message))
    return selected


def _kind_and_message(row: FailureCount) -> tuple[str, str]:
    return row.error_kind or UNKNOWN_KIND, row.error_message or UNKNOWN_MESSAGE
