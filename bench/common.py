"""What every benchmark shares: a figure with its baseline and target, and where figures go.

A benchmark is a module of this package with `run(quick: bool) -> list[Figure]`. It measures livebatch and its
baseline in the same run, on this machine, so that the ratio holds even when the absolute numbers drift.
"""

from __future__ import annotations

import json
import math
import os
import socket
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PG_URL = os.environ.get("LIVEBATCH_BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


@dataclass(frozen=True)
class Figure:
    """One measured figure. `target` says what good is, as `(op, bound)`: `("<", 100)` means under 100 `unit`s,
    `("ratio<=", 1.5)` means within 1.5x of the baseline, `("ratio>=", 0.5)` at least half of it. None: reported
    only."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    target: tuple[str, float] | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        op, bound = self.target
        if op.startswith("ratio"):
            ratio = self.ratio
            if ratio is None:
                return None
            return _compare(op.removeprefix("ratio"), ratio, bound)
        return _compare(op, self.value, bound)

    def target_text(self) -> str:
        if self.target is None:
            return ""
        op, bound = self.target
        if op.startswith("ratio"):
            return f"{op.removeprefix('ratio')} {bound:g}x baseline"
        return f"{op} {bound:g} {self.unit}"

    def record(self) -> dict[str, Any]:
        out = asdict(self)
        out["value"] = _rounded(self.value)
        out["baseline"] = None if self.baseline is None else _rounded(self.baseline)
        out["ratio"] = None if self.ratio is None else round(self.ratio, 3)
        out["target"] = self.target_text() or None
        out["met"] = self.met
        return out


def _compare(op: str, value: float, bound: float) -> bool:
    checks: dict[str, Callable[[float, float], bool]] = {
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    return checks[op](value, bound)


def _rounded(value: float) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    digits = max(0, 3 - math.floor(math.log10(abs(value))))
    return round(value, digits)


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile: the value below which `pct` percent of the sample lies."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write(figures: Sequence[Figure], path: Path) -> None:
    path.write_text(json.dumps([f.record() for f in figures], indent=2) + "\n")
