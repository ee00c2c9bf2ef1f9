"""Run the benchmarks and print each figure beside its baseline: `python -m bench [--quick] [--only NAME]`."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common import Figure, write

BENCHMARKS = ["fanout", "scaled", "pipeline", "resume", "snapshot", "page"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that each runs, not how fast")
    parser.add_argument("--only", action="append", choices=BENCHMARKS, help="run only this one (repeatable)")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON (default: bench/results.json)")
    parser.add_argument("--markdown", type=Path, metavar="JSON", help="print the figures of JSON as a table, run none")
    args = parser.parse_args(argv)
    if args.markdown is not None:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    out: Path | None = args.out
    if out is None and not args.quick:
        out = Path(__file__).parent / "results.json"

    console = Console(width=None if sys.stdout.isatty() else 150)  # a log file gets the table whole
    console.print(f"[bold]livebatch benchmarks[/] on {machine()}" + (" (quick)" if args.quick else ""))
    figures: list[Figure] = []
    for name in args.only or BENCHMARKS:
        started = time.monotonic()
        module = importlib.import_module(f"bench.{name}")
        console.print(f"[bold]{name}[/]: {module.__doc__.splitlines()[0] if module.__doc__ else ''}")
        found: list[Figure] = module.run(quick=args.quick)
        figures += found
        console.print(table(found))
        console.print(f"  ({time.monotonic() - started:.0f} s)")
    if out is not None:
        write(figures, out)
        console.print(f"figures written to {out}")
    console.print(table(figures, title="All figures"))
    return 0


def table(figures: Sequence[Figure], title: str | None = None) -> Table:
    grid = Table(title=title, show_lines=False)
    for column in ("figure", "value", "baseline", "ratio", "target", "met"):
        grid.add_column(column, justify="left" if column in ("figure", "target") else "right")
    for f in figures:
        met = {True: "[green]yes[/]", False: "[red]no[/]", None: ""}[f.met]
        grid.add_row(
            f.name,
            f"{f.value:,.4g} {f.unit}",
            "" if f.baseline is None else f"{f.baseline:,.4g} {f.unit}",
            "" if f.ratio is None else f"{f.ratio:.2f}x",
            f.target_text(),
            met,
        )
    return grid


def markdown(records: Sequence[dict[str, Any]]) -> str:
    """The README's table, from results.json."""

    def number(value: float | None, unit: str = "") -> str:
        return "" if value is None else f"{value:,.4g} {unit}".strip()

    lines = ["| figure | value | baseline | ratio | target | met |", "|---|---:|---:|---:|---|---|"]
    for r in records:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        met = {True: "yes", False: "**no**", None: ""}[r["met"]]
        value, baseline = number(r["value"], r["unit"]), number(r["baseline"], r["unit"])
        lines.append(f"| {r['name']} | {value} | {baseline} | {ratio} | {r['target'] or ''} | {met} |")
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


if __name__ == "__main__":
    sys.exit(main())
