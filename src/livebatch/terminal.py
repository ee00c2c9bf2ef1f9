"""What the terminal shows of a batch (Rich): a progress bar with counts, throughput and ETA, and one
line per failure. Building the text is pure; `ProgressView` only prints it."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text


def format_eta(ms: int) -> str:
    if ms <= 0:
        return "—"
    seconds = round(ms / 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
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


class ProgressView:
    """A live bar on a terminal. Into a pipe or a file there is no bar (Rich would draw it once, cut to 80
    columns): failures and the caller's summary are printed as whole lines."""

    def __init__(self, console: Console, total: int, *, label: str = "generating") -> None:
        self.console = console
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(complete_style="#69a338"),
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
        self._progress.update(
            self._task,
            completed=snapshot["completedItems"],
            total=snapshot["totalItems"],
            counts=format_counts(snapshot),
        )

    def failure(self, payload: dict[str, Any]) -> None:
        self._progress.console.print(format_failure(payload), soft_wrap=True)

    def note(self, text: str) -> None:
        self._progress.console.print(text, soft_wrap=True)
