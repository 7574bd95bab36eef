"""How one session runs its handler's code, and accounts for the calls that hang.

Coroutines run on the loop. Sync code runs in the worker's bounded pool
(``sessions.pool.HandlerPool``), in a copy of the session's context (so
``get_current_context()`` works there), named after the stream, session and
function if it gets stuck. A sync ``emit()`` may block until there is output
(FastRTC's ``queue.get()`` idiom), and for ever once the session has ended: it
runs on a thread of the session's own (``OwnThread``), never in the pool, called
ahead of the session's need (``sessions.ahead.EmitAhead``).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Callable
from typing import Any

from django_rtcstream import metrics
from django_rtcstream.handlers import SessionPort, StreamHandlerBase, VideoStreamHandler
from django_rtcstream.media.feed import SerialFeed
from django_rtcstream.sessions.ahead import EmitAhead
from django_rtcstream.sessions.pool import ENDED_GRACE, HandlerPool, OwnThread


def own_handler(
    declared: Any, port: SessionPort, inputs: list[Any]
) -> tuple[StreamHandlerBase | None, Callable[..., Any] | None]:
    """A session's own copy of a class handler, attached to it; or the stream's function."""
    if isinstance(declared, StreamHandlerBase):
        handler = declared.copy()
        handler._attach(port)
        # The defaults, without args_set: that waits for the client's own values.
        handler.latest_args = ["__webrtc_value__", *inputs]
        return handler, None
    if isinstance(declared, VideoStreamHandler):
        return None, declared.callable
    return None, declared


class SessionCalls:
    """The handler calls of one session (``owner``, as the pool's registry knows it)."""

    def __init__(
        self,
        owner: Any,
        pool: HandlerPool,
        loop: asyncio.AbstractEventLoop,
        context: contextvars.Context,
        naming: str,
        thread_name: str,
    ) -> None:
        self.owner, self.pool, self.loop, self.context = owner, pool, loop, context
        self.naming, self.thread_name = naming, thread_name
        self._own_thread: OwnThread | None = None
        self._ahead: dict[Any, EmitAhead] = {}

    def label(self, fn: Any) -> str:
        """How a stuck call is named in the log: stream, session and function."""
        name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
        return f"{name}() of {self.naming}"

    async def call(self, fn: Callable[..., Any], *args: Any, own_thread: bool = False) -> Any:
        if own_thread and not args and not inspect.iscoroutinefunction(fn):
            # The session's own thread calls a sync emit() ahead (sessions.ahead).
            ahead = self._ahead.get(fn)
            if ahead is None:
                ahead = self._ahead[fn] = EmitAhead(
                    metrics.timed(self.owner, fn),
                    self._thread(),
                    self.pool.calls,
                    self.loop,
                    self.context,
                    self.label(fn),
                    self.owner,
                )
            return await ahead.next()
        fn = metrics.timed(self.owner, fn)  # handler call durations (a no-op without them)
        if inspect.iscoroutinefunction(fn):
            return await fn(*args)
        executor: HandlerPool | OwnThread = self.pool
        if own_thread:
            executor = self._thread()
        future = executor.submit_as(self.label(fn), self.owner, self.context.copy().run, fn, *args)
        result = await asyncio.wrap_future(future, loop=self.loop)
        if inspect.isawaitable(result):
            return await result
        return result

    def _thread(self) -> OwnThread:
        if self._own_thread is None:
            self._own_thread = OwnThread(self.pool.calls, self.thread_name)
        return self._own_thread

    def serial_feed(
        self,
        fn: Callable[[Any], None],
        on_error: Callable[[BaseException], None],
        after: Callable[[], None],
        calls: Callable[..., Any],
    ) -> SerialFeed:
        return SerialFeed(
            self.loop,
            self.pool,
            fn,
            self.context,
            on_error,
            after,
            label=self.label(calls),
            owner=self.owner,
        )

    def stuck(self) -> int:
        """How many of the session's calls are stuck (counted on its record)."""
        return len(self.pool.calls.stuck(owner=self.owner))

    def session_ended(self) -> None:
        """Stop the session's own thread; calls still running now count as abandoned."""
        for ahead in self._ahead.values():
            ahead.stop()
        if self._own_thread is not None:
            self._own_thread.shutdown()
        self.pool.calls.owner_ended(self.owner)

    async def let_finish(self) -> None:
        """Give calls in flight a moment to return, so the record counts as stuck only
        the calls that really are (a blocked ``emit()``)."""
        calls = self.pool.calls
        deadline = self.loop.time() + ENDED_GRACE
        while calls.running(self.owner) > len(calls.stuck(self.owner)):
            if self.loop.time() >= deadline:
                return
            await asyncio.sleep(0.02)
