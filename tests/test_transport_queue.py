"""The transports' queue read: a timeout, the order of items, and a stop that is never swallowed."""

from __future__ import annotations

import asyncio
import sys

import pytest

from firmware_bridge.transports.aio import next_item


def test_items_come_in_order_and_silence_times_out() -> None:
    async def run():
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(3):
            queue.put_nowait(i)
        got = [await next_item(queue, 1.0) for _ in range(3)]
        with pytest.raises(asyncio.TimeoutError):
            await next_item(queue, 0.05)
        return got

    assert asyncio.run(run()) == [0, 1, 2]


async def _cancel_as_the_item_arrives(read, steps: int) -> str:
    """Cancel a reader ``steps`` loop turns after its item was queued: what did the reader see?"""
    queue: asyncio.Queue[str] = asyncio.Queue()
    task = asyncio.create_task(read(queue, 5.0))
    await asyncio.sleep(0.01)  # the reader is waiting
    queue.put_nowait("chunk")
    for _ in range(steps):
        await asyncio.sleep(0)
    if task.done():
        return "read before the cancel"
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return "cancelled, chunk still queued" if queue.qsize() == 1 else "cancelled, chunk lost"
    return "cancellation swallowed"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Python 3.10 keeps asyncio.wait_for (no asyncio.timeout)")
def test_a_stop_that_arrives_with_a_chunk_is_never_swallowed_and_the_chunk_stays() -> None:
    async def wait_for_read(queue, timeout_s):  # what the transports did before
        return await asyncio.wait_for(queue.get(), timeout_s)

    async def run(read):
        return [await _cancel_as_the_item_arrives(read, steps) for steps in range(4)]

    outcomes = asyncio.run(run(next_item))
    assert "cancellation swallowed" not in outcomes and "cancelled, chunk lost" not in outcomes, outcomes
    assert "cancelled, chunk still queued" in outcomes, outcomes  # the race really was run
    if sys.version_info < (3, 12):  # the race is real: wait_for swallows the stop in the same schedule
        assert "cancellation swallowed" in asyncio.run(run(wait_for_read))
