"""The README is part of the product: its commands and its settings table must match the code."""

from __future__ import annotations

import re
from pathlib import Path

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
