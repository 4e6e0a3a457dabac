"""asyncio helpers shared by the transports."""

from __future__ import annotations

import asyncio
import sys
from typing import TypeVar

T = TypeVar("T")


async def next_item(queue: asyncio.Queue[T], timeout_s: float) -> T:
    """``queue.get()`` within ``timeout_s`` (``asyncio.TimeoutError`` after it), always yielding once.

    Not ``asyncio.wait_for``: on Python < 3.12 it can swallow a cancellation that arrives just as
    the item does, and a source being stopped keeps running. ``asyncio.timeout`` (3.11+) tells its
    own cancellation from the caller's. The first yield keeps a chatty port from starving the loop
    while items are queued (wait_for's inner task yielded too). Python 3.10 keeps wait_for.
    """
    await asyncio.sleep(0)
    if sys.version_info < (3, 11):
        return await asyncio.wait_for(queue.get(), timeout_s)
    async with asyncio.timeout(timeout_s):  # novermin (3.10 returned above)
        return await queue.get()
