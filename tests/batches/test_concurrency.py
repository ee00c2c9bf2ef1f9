"""Concurrency limits, observed where a user would feel them: the provider and the event log."""

from __future__ import annotations

import asyncio

from tests.batches.conftest import PartsFactory, ProbeProvider, start_batch
from tests.batches.ledger import max_in_flight
from tests.checks import assert_consistent, event_log, wait_for_status, worker_of
from tests.conftest import Person


async def test_no_batch_exceeds_its_concurrency_and_no_process_its_maximum(
    open_parts: PartsFactory, people: dict[str, Person]
) -> None:
    probe = ProbeProvider(held=True)
    rt = await open_parts(probe, batch_concurrency=4, max_concurrency=6)
    owner = people["faculty"]
    batches = [await start_batch(rt, owner, 10) for _ in range(3)]  # 3 x 4 items dispatched, 6 slots

    await probe.wait_in_flight(6)
    await worker_of(rt).sweeper.sweep()
    for _ in range(20):  # give any excess delivery every chance to show up before the gate opens
        await asyncio.sleep(0)
    assert probe.in_flight == 6
    assert all(n <= 4 for n in probe.batch_in_flight.values())

    probe.gate.set()
    for batch_id in batches:
        assert (await wait_for_status(rt, batch_id)).status == "completed"
        await assert_consistent(rt.db, batch_id)
        assert max_in_flight(await event_log(rt.db, batch_id)) <= 4
    assert probe.peak == 6
    assert max(probe.batch_peak.values()) == 4 and len(probe.batch_peak) == 3


async def test_a_batch_alone_runs_exactly_its_concurrency_at_once(
    open_parts: PartsFactory, people: dict[str, Person]
) -> None:
    probe = ProbeProvider(held=True)
    rt = await open_parts(probe, batch_concurrency=3, max_concurrency=16)
    batch_id = await start_batch(rt, people["faculty"], 12)
    await probe.wait_in_flight(3)
    await worker_of(rt).sweeper.sweep()
    for _ in range(20):
        await asyncio.sleep(0)
    assert probe.in_flight == 3
    probe.gate.set()
    await wait_for_status(rt, batch_id)
    assert max_in_flight(await event_log(rt.db, batch_id)) == 3
    assert probe.peak == 3
