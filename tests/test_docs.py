"""The README is part of the product: its commands and its settings table must match the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from livebatch.config import Settings

README = Path(__file__).parents[1] / "README.md"


def test_readme_starts_with_the_two_commands() -> None:
    first = [line.split("#")[0].strip() for line in README.read_text().splitlines()[:2]]
    assert first == ["make demo", "make test"]


def test_settings_table_lists_every_setting_with_its_description() -> None:
    rows = re.findall(r"^\| `LIVEBATCH_(\w+)` \| [^|]+ \| (.+) \|$", README.read_text(), flags=re.MULTILINE)
    documented = {name.lower(): meaning for name, meaning in rows}
    fields = {name: field.description for name, field in Settings.model_fields.items()}
    assert documented.keys() == fields.keys()
    for name, description in fields.items():
        assert documented[name] == description, name


def _counted_rows() -> list[tuple[int, list[str]]]:
    """(count, the tests it names) of every row of the Reliability and security tables."""
    section = README.read_text().split("\n## Reliability and security\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| .+? \| (\d+) \| (.+) \|$", section, flags=re.MULTILINE)
    return [(int(count), re.findall(r"`(tests/[^`]+)`", where)) for count, where in rows]


def _names(node: str, reference: str) -> bool:
    return node == reference or node.startswith((f"{reference}::", f"{reference}["))


def test_reliability_and_security_counts_are_the_collected_tests(request: pytest.FixtureRequest) -> None:
    """Read off the suite this test runs in; alone (`pytest tests/test_docs.py`) there is nothing to compare."""
    nodes = [item.nodeid for item in request.session.items]
    rows = _counted_rows()
    if not all(any(_names(n, ref) for n in nodes) for _, refs in rows for ref in refs):
        pytest.skip("run with the whole suite: the table names tests outside this run")
    for count, refs in rows:
        assert sum(1 for n in nodes if any(_names(n, ref) for ref in refs)) == count, refs
    text = README.read_text()
    for folder in ("reliability", "security"):
        inside = [n for n in nodes if n.startswith(f"tests/{folder}/")]
        assert f"`tests/{folder}/` ({len(inside)} tests)" in text
        unlisted = [n for n in inside if not any(_names(n, ref) for _, refs in rows for ref in refs)]
        assert unlisted == [], "a test of the folder is in no row of the table"
