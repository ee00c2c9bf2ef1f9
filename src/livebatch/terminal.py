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


def format_counts(snapshot: dict[str, Any]) -> str:
    """`12 completed · 5 running · 1 failed · 2 pending · 3.6/min · ETA 1m 57s`, and `· 4 cancelled` after
    the pending count once a cancel stopped any (a server before `cancelledItems` sends none)."""
    cancelled = snapshot.get("cancelledItems", 0)
    return (
        f"{snapshot['completedItems']} completed · {snapshot['inProgressItems']} running · "
        f"{snapshot['failedItems']} failed · {snapshot['pendingItems']} pending · "
        + (f"{cancelled} cancelled · " if cancelled else "")
        + f"{snapshot['throughputRate']:g}/min · ETA {format_eta(snapshot['estimatedTimeRemainingMs'])}"
    )


def format_failure(payload: dict[str, Any]) -> Text:
    retry = "will retry" if payload.get("willRetry") else "failed for good"
    line = Text(f"  #{payload['itemIndex'] + 1} attempt {payload['retryCount']}: ", style="red")
    line.append(str(payload["errorMessage"]))
    line.append(f" ({retry})", style="dim")
    return line


def format_summary(batch_id: str, complete: dict[str, Any]) -> str:
    return (
        f"batch {batch_id} {complete['status']}: {complete['completedItems']} completed, "
        f"{complete['failedItems']} failed of {complete['totalItems']} "
        f"in {format_eta(complete['totalDurationMs'])}"
    )


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
