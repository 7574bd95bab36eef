"""A count the event loop can wait on, cheaper than ``asyncio.Event`` + ``wait_for``.

Per-frame waits (the emit pump waiting for input, the output track waiting
for audio until a frame's deadline) ran ``asyncio.wait_for(event.wait(), t)``
50 times a second per session: a task, a future and a timer each time, and
on timeout a cancellation that costs another loop iteration. ``Arrivals`` is
one future and one timer, and a producer on another thread wakes the loop
only when someone waits.
"""

from __future__ import annotations

import asyncio


class Arrivals:
    """Things arrived (frames handled, audio pushed), counted.

    ``wait_after(seen, timeout)`` sleeps until the count moves past ``seen``.
    The count is written by one thread at a time (a feed's pool job, or the
    loop); the waiter is published before the count is checked again, so an
    arrival between the two is never missed.
    """

    def __init__(self) -> None:
        self.count = 0
        self._waiter: asyncio.Future[None] | None = None

    def tick(self) -> None:
        """One more (on the loop)."""
        self.count += 1
        wake(self._waiter)

    def tick_threadsafe(self) -> None:
        """One more (on another thread); wakes the loop only if it waits."""
        self.count += 1
        waiter = self._waiter
        if waiter is not None:
            waiter.get_loop().call_soon_threadsafe(wake, waiter)

    async def wait_after(self, seen: int, timeout: float | None) -> None:
        """Return when ``count`` is past ``seen``, or after ``timeout`` seconds."""
        if self.count != seen:
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        if self.count != seen:
            self._waiter = None
            return
        timer = loop.call_later(timeout, wake, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            self._waiter = None


def wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
