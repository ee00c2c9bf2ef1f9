"""What the terminal shows of a batch (Rich): a progress bar with counts, throughput and ETA, and one
line per failure. Building the text is pure; `ProgressView` only prints it.

The progress line fits the terminal: at 80 columns the counts take a shorter form and the bar a shorter
width (`fit_progress`), instead of Rich cutting every column to "generat… ET…"."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

BAR_WIDTH = (10, 40)  # the bar's least and greatest width, in columns
ELAPSED_WIDTH = 7  # `0:01:23`


def cli_command() -> str:
    """How to run this installation's `livebatch`, as the pages and `make demo` print it: `livebatch` when
    that is what PATH finds, else its path (`.venv/bin/livebatch` from the project's directory)."""
    script = Path(sys.executable).with_name("livebatch")
    found = shutil.which("livebatch")
    if found is not None and Path(found).absolute() == script.absolute():
        return "livebatch"
    try:
        return str(script.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def format_eta(ms: int) -> str:
    """The page's one time format: `45s`, `5m 30s`, `1h 02m 05s`; `—` for none."""
    if ms <= 0:
        return "—"
    seconds = round(ms / 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {seconds:02d}s"
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def format_eta_range(snapshot: dict[str, Any]) -> str:
    """` (1m 27s to 2m 29s)` after the point ETA: its 10th-90th percentile range, once the server sends one."""
    bounds = snapshot.get("estimatedTimeRemainingRangeMs")
    if not bounds or bounds[1] <= 0:
        return ""
    return f" ({format_eta(bounds[0])} to {format_eta(bounds[1])})"


def format_cost(cost: float | None, currency: str) -> str:
    """`0.000459 USD`, `12.35 USD`; `cost unknown` when some attempt's model has no price."""
    if cost is None:
        return "cost unknown"
    return f"{cost:,.2f} {currency}" if cost >= 1 else f"{cost:.4g} {currency}"


def format_usage(snapshot: dict[str, Any]) -> str:
    """`1,530 tokens · 0.000459 USD`, or "" from a server that sends no usage."""
    if "promptTokens" not in snapshot:
        return ""
    tokens = snapshot["promptTokens"] + snapshot["completionTokens"]
    return f"{tokens:,} tokens · {format_cost(snapshot.get('cost'), snapshot.get('currency', ''))}"


def format_counts(snapshot: dict[str, Any]) -> str:
    """`12 completed · 5 running · 1 failed · 2 pending · 3.6/min · ETA 1m 57s`, and `· 4 cancelled` after
    the pending count once a cancel stopped any (a server before `cancelledItems` sends none); then the
    ETA's range and the usage so far, from a server that sends them."""
    cancelled = snapshot.get("cancelledItems", 0)
    usage = format_usage(snapshot)
    return (
        f"{snapshot['completedItems']} completed · {snapshot['inProgressItems']} running · "
        f"{snapshot['failedItems']} failed · {snapshot['pendingItems']} pending · "
        + (f"{cancelled} cancelled · " if cancelled else "")
        + f"{snapshot['throughputRate']:g}/min · ETA {format_eta(snapshot['estimatedTimeRemainingMs'])}"
        + format_eta_range(snapshot)
        + (f" · {usage}" if usage else "")
    )


def short_counts(snapshot: dict[str, Any]) -> str:
    """`12 done · 5 running · 1 failed · 2 pending · ETA 1m 57s`: the counts in fewer columns."""
    cancelled = snapshot.get("cancelledItems", 0)
    return (
        f"{snapshot['completedItems']} done · {snapshot['inProgressItems']} running · "
        f"{snapshot['failedItems']} failed · {snapshot['pendingItems']} pending · "
        + (f"{cancelled} cancelled · " if cancelled else "")
        + f"ETA {format_eta(snapshot['estimatedTimeRemainingMs'])}"
    )


def compact_counts(snapshot: dict[str, Any]) -> str:
    """`✓12 ◔5 ✕1 ○2 ETA 1m 57s`: every count still, as for a narrow terminal."""
    cancelled = snapshot.get("cancelledItems", 0)
    return (
        f"✓{snapshot['completedItems']} ◔{snapshot['inProgressItems']} ✕{snapshot['failedItems']} "
        f"○{snapshot['pendingItems']} "
        + (f"⊘{cancelled} " if cancelled else "")
        + f"ETA {format_eta(snapshot['estimatedTimeRemainingMs'])}"
    )


def fit_progress(snapshot: dict[str, Any], *, width: int, label: str, reconnecting: bool = False) -> tuple[int, str]:
    """The bar's width and the counts' text for a progress line `width` columns wide: the longest form of the
    counts that leaves the bar its least width, and the bar whatever is left (up to its greatest)."""
    total = snapshot["totalItems"]
    fraction = cell_len(f"{total}/{total} (100%)")
    room = width - cell_len(label) - fraction - ELAPSED_WIDTH - 4  # four spaces between five columns
    prefix = "reconnecting… · " if reconnecting else ""
    forms = [prefix + form(snapshot) for form in (format_counts, short_counts, compact_counts)]
    counts = next((form for form in forms if cell_len(form) <= room - BAR_WIDTH[0]), forms[-1])
    bar = max(BAR_WIDTH[0], min(BAR_WIDTH[1], room - cell_len(counts)))
    return bar, counts


def format_failure(payload: dict[str, Any]) -> Text:
    retry = "will retry" if payload.get("willRetry") else "failed for good"
    line = Text(f"  #{payload['itemIndex'] + 1} attempt {payload['retryCount']}: ", style="red")
    line.append(str(payload["errorMessage"]))
    line.append(f" ({retry})", style="dim")
    return line


def format_summary(batch_id: str, complete: dict[str, Any], usage: dict[str, Any] | None = None) -> str:
    """`batch ID completed_with_errors: 198 completed, 2 failed of 200 in 31s`, then what it used when known
    (`usage`: a snapshot): `, 61,530 tokens, 0.01845 USD`."""
    line = (
        f"batch {batch_id} {complete['status']}: {complete['completedItems']} completed, "
        f"{complete['failedItems']} failed of {complete['totalItems']} "
        f"in {format_eta(complete['totalDurationMs'])}"
    )
    used = format_usage(usage or {})
    return line + (", " + used.replace(" · ", ", ") if used else "")


def format_failure_groups(groups: list[dict[str, Any]]) -> list[str]:
    """One line per group of failed items (the batch API's `failureGroups`), the largest first:
    `  3  validation  Validation failed: options … are identical   [validation-3f2a…]`."""
    if not groups:
        return []
    total = sum(int(g["count"]) for g in groups)
    lines = [f"{total} failed {'item' if total == 1 else 'items'} by cause:"]
    width = max(len(str(g["errorKind"])) for g in groups)
    for g in groups:
        lines.append(f"  {g['count']:>3}  {g['errorKind']:<{width}}  {g['message']}  [{g['key']}]")
    return lines


def format_deliveries(deliveries: list[dict[str, Any]]) -> list[str]:
    """One line per webhook delivery (the API's camelCase fields), newest first."""
    if not deliveries:
        return ["no deliveries yet"]
    lines = []
    for d in deliveries:
        answer = d.get("lastError") or (f"HTTP {d['lastStatusCode']}" if d.get("lastStatusCode") else "")
        pending = f", next {d['nextAttemptAt']}" if d["status"] == "pending" and d.get("nextAttemptAt") else ""
        lines.append(
            f"  {d['createdAt']}  {d['event']:<15} {d['status']:<9} {d['attempts']} attempts{pending}"
            + (f"  {answer}" if answer else "")
            + f"  batch {d['batchId']}"
        )
    return lines


class ProgressView:
    """A live bar on a terminal. Into a pipe or a file there is no bar (Rich would draw it once, cut to 80
    columns): failures and the caller's summary are printed as whole lines."""

    def __init__(self, console: Console, total: int, *, label: str = "generating") -> None:
        self.console = console
        self.label = label
        self._snapshot: dict[str, Any] | None = None
        self._reconnecting = False
        self._bar = BarColumn(complete_style="#69a338")
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            self._bar,
            TextColumn("{task.completed}/{task.total} ({task.percentage:>3.0f}%)"),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            disable=not console.is_terminal,
        )
        self._task: TaskID = self._progress.add_task(label, total=total, counts="")

    def __enter__(self) -> ProgressView:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def update(self, snapshot: dict[str, Any]) -> None:
        self._snapshot = snapshot
        width, counts = fit_progress(
            snapshot, width=self.console.width, label=self.label, reconnecting=self._reconnecting
        )
        self._bar.bar_width = width
        self._progress.update(
            self._task,
            completed=snapshot["completedItems"],
            total=snapshot["totalItems"],
            counts=counts,
        )

    def reconnecting(self, lost: bool) -> None:
        """The connection is lost (and being made again): the line says so until it is back."""
        self._reconnecting = lost
        if self._snapshot is not None:
            self.update(self._snapshot)

    def failure(self, payload: dict[str, Any]) -> None:
        self._progress.console.print(format_failure(payload), soft_wrap=True)

    def note(self, text: str) -> None:
        self._progress.console.print(text, soft_wrap=True)
