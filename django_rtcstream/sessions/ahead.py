"""A sync ``emit()`` called ahead, on the session's own thread.

Called the plain way, each item of a sync ``emit`` takes two thread hand-offs: the
loop wakes the session's thread with a request, and the thread wakes the loop
with the answer. On this project's 2-core machines a hand-off pair costs 120-150
us of CPU by itself, and an audio session asks 50 times a second
(bench/README.md, "The audio WebSocket path"). ``EmitAhead`` has the thread call
``emit`` again as soon as its previous result has been handed over, so each item
costs only the answer. At most two results are made ahead of what the loop has
taken, the one being made included, so the handler is pulled at most two items
before the session needs them (what an ``emit`` does with its queue, it still does:
an echo's ``queue.get()`` still blocks until input).

Each call is counted in the pool's registry as a plain call is (stuck calls,
their log lines and the session's ``stuck_calls`` see no difference); the thread's
loop itself is not a call.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from django_rtcstream.sessions.pool import CallRegistry, OwnThread


class EmitAhead:
    """``fn`` (no arguments) called over and over on ``thread``, results to the loop.

    ``next()`` (on the loop) returns the results in order, or raises what ``fn``
    raised; after an exception the thread stops calling. ``stop()`` ends the loop
    once the call in progress returns.
    """

    def __init__(
        self,
        fn: Callable[[], Any],
        thread: OwnThread,
        registry: CallRegistry,
        loop: asyncio.AbstractEventLoop,
        context: contextvars.Context,
        label: str,
        owner: Any,
    ) -> None:
        self.fn, self.thread, self.registry, self.loop = fn, thread, registry, loop
        self.context, self.label, self.owner = context, label, owner
        self._results: deque[tuple[bool, Any]] = deque()  # (ok, result or exception)
        self._waiter: asyncio.Future[None] | None = None
        # Results made and not yet taken, the one being made included: two, so the next
        # call is already running (an echo's blocked in its queue.get) when next() takes one.
        self._room = threading.Semaphore(2)
        self._stopped = False
        self._started = False

    async def next(self) -> Any:
        if not self._started:
            self._started = True
            self.thread.start_loop(self._run)
        while not self._results:
            waiter = self._waiter = self.loop.create_future()
            if self._results:  # arrived before the waiter was published
                break
            try:
                await waiter
            finally:
                self._waiter = None
        ok, value = self._results.popleft()
        self._room.release()
        if not ok:
            raise value
        if inspect.isawaitable(value):  # a sync emit that returned a coroutine
            return await value
        return value

    def stop(self) -> None:
        self._stopped = True
        self._room.release()  # a thread waiting for room wakes and sees the stop

    # -- on the session's own thread ------------------------------------------------------

    def _is_stopped(self) -> bool:
        return self._stopped

    def _run(self) -> None:
        while True:
            self._room.acquire()
            if self._stopped:
                return
            call_id = self.registry.begin(self.label, self.owner)
            try:
                result: tuple[bool, Any] = (True, self.context.copy().run(self.fn))
            except BaseException as exc:  # handed to next(), which raises it
                result = (False, exc)
            finally:
                self.registry.end(call_id)
            if self._is_stopped():  # the session ended while fn ran
                return
            try:
                self.loop.call_soon_threadsafe(self._arrived, result)
            except RuntimeError:  # the loop is closed: the worker is stopping
                return
            if not result[0]:
                return

    def _arrived(self, result: tuple[bool, Any]) -> None:
        self._results.append(result)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
