"""Per-frame handler calls that do not wake the event loop when they finish.

``loop.run_in_executor`` costs two thread wake-ups per call: the pool thread,
then the loop again to resolve the future. For a sync audio ``receive`` the
loop does not need the result, only the order and the errors: a
``SerialFeed`` queues frames for one pool job at a time, which takes them
until none are left, so the loop only enqueues. At 50 audio frames a second per
session, the wake-up saved is the largest per-frame cost of the package's own
(bench/README.md, "Figures the code cites").

``media.arrivals.Arrivals`` is the other half: it counts the frames handled,
so the emit pump can sleep until the next one without the feed waking the
loop when nobody waits.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from django_rtcstream.media.arrivals import wake


class SerialFeed:
    """Calls ``fn(item)`` for each item put, in order, one at a time, on ``executor``.

    Each call runs in a copy of ``context`` (as ``Session.call`` does). The first
    exception stops the feed: later items are dropped and ``on_error(exc)`` runs on
    the loop. ``backlog`` counts the items not yet taken, so the producer can wait
    (``wait_backlog``) instead of queueing without bound when ``fn`` is slower than
    the frames arrive.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        executor: Executor,
        fn: Callable[[Any], None],
        context: contextvars.Context,
        on_error: Callable[[BaseException], None],
        after: Callable[[], None] | None = None,
        *,
        label: str = "",
        owner: Any = None,
    ) -> None:
        self.loop = loop
        self.label, self.owner = label, owner  # name the job if it gets stuck (HandlerPool)
        self.executor = executor
        self.fn = fn
        self.context = context
        self.on_error = on_error
        self.after = after
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        self._running = False
        self._stopped = False
        self._low: tuple[int, asyncio.Future[None]] | None = None

    @property
    def backlog(self) -> int:
        return len(self._items)

    def put(self, item: Any, keep: int | None = None) -> int:
        """Queue ``item``; with ``keep``, drop the oldest items waiting beyond that many
        (a producer that cannot wait). Returns how many were dropped."""
        dropped = 0
        with self._lock:
            if self._stopped:
                return 0
            if keep is not None:
                while len(self._items) >= keep:
                    self._items.popleft()
                    dropped += 1
            self._items.append(item)
            if self._running:
                return dropped
            self._running = True
        submit_as = getattr(self.executor, "submit_as", None)
        if submit_as is not None:
            submit_as(self.label, self.owner, self._drain)
        else:
            self.executor.submit(self._drain)
        return dropped

    def stop(self) -> None:
        """Drop what is queued and take nothing more (the call running finishes)."""
        with self._lock:
            self._stopped = True
            self._items.clear()
        self._release_waiter()

    async def wait_backlog(self, at_most: int) -> None:
        """Return once no more than ``at_most`` items wait (or the feed stopped)."""
        if len(self._items) <= at_most or self._stopped:
            return
        waiter = self.loop.create_future()
        self._low = (at_most, waiter)
        if len(self._items) <= at_most or self._stopped:
            self._low = None
            return
        try:
            await waiter
        finally:
            self._low = None

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._items:
                    self._running = False
                    return
                item = self._items.popleft()
            low = self._low
            if low is not None and len(self._items) <= low[0]:
                self.loop.call_soon_threadsafe(wake, low[1])
            try:
                self.context.copy().run(self.fn, item)
            except BaseException as exc:
                self.stop()
                with self._lock:
                    self._running = False
                self.loop.call_soon_threadsafe(self.on_error, exc)
                return
            if self.after is not None:
                self.after()

    def _release_waiter(self) -> None:
        low = self._low
        if low is not None:
            self.loop.call_soon_threadsafe(wake, low[1])
