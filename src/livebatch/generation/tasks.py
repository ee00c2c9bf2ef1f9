"""The Taskiq task: one per dispatched item, handed to this process's `Worker` (worker.py).

A process that only queues work (an API instance scaled out) registers the task too, so that `kiq`
knows its name; only a worker process runs it.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol
from uuid import UUID

from taskiq import AsyncBroker, Context, TaskiqDepends
from taskiq.decor import AsyncTaskiqDecoratedTask

TASK_NAME = "livebatch.generate_item"


class ItemWork(Protocol):
    """What runs an item: the process's `Worker`, left on the broker's state by `Parts.start`."""

    async def run(self, item_id: UUID) -> None: ...


async def generate_item(item_id: str, context: Annotated[Context, TaskiqDepends()]) -> None:
    worker: ItemWork = context.state.worker
    await worker.run(UUID(item_id))


def register(broker: AsyncBroker) -> AsyncTaskiqDecoratedTask[Any, Any]:
    return broker.register_task(generate_item, task_name=TASK_NAME)
