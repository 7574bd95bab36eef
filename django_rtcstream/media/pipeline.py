"""What every pipeline shares: the interface to its session, and the handler's sources.

A pipeline (``media.audio_pipelines``, ``media.video_pipelines``) owns one data
path's policy; the session owns the handler and its calls. ``PipelineHost`` is
all a pipeline may ask of its session: call handler code, take the handler's
extras, fail, finish. A *source* is what the handler produces, pulled one item
at a time: a receive-mode function's generator, or a handler's ``emit``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from django_rtcstream.media.feed import SerialFeed

Work = Coroutine[Any, Any, None]


class Ended(Exception):
    """The source of a pipeline is gone (a generator returned)."""


class PipelineHost(Protocol):
    """What a pipeline may ask of the session it runs in."""

    loop: asyncio.AbstractEventLoop
    inputs: list[Any]  # the current input values, after the frame in a function's call
    ready: asyncio.Event  # start_up() has begun: the handler may be called

    async def call(self, fn: Callable[..., Any], *args: Any, own_thread: bool = False) -> Any:
        """Run handler code (sync code off the loop; on the session's own thread if asked)."""

    def serial_feed(
        self, fn: Callable[[Any], None], after: Callable[[], None], *, calls: Callable[..., Any]
    ) -> SerialFeed:
        """A feed that runs sync ``fn(item)`` off the loop, in order, failing the session
        on error; ``calls`` is the handler function it runs, named if a call gets stuck."""

    def timed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn``, counted in the handler call metrics when a pipeline calls it directly."""

    async def handle_extra(self, extra: Any) -> None:
        """An ``AdditionalOutputs`` or ``CloseStream`` the handler returned."""

    def fail(self, exc: BaseException) -> None:
        """The handler raised: the session reports it and closes."""

    def finish(self) -> None:
        """The handler's source ended: the session tells the client and closes."""


class Pipeline:
    """A data path: its counters, the tasks it runs, what it does on input changes."""

    def __init__(self, host: PipelineHost) -> None:
        self.host = host
        self.frames_in = 0
        self.frames_out = 0

    def tasks(self) -> dict[str, Work]:
        """The coroutines the session runs for this path, by task name."""
        return {}

    def inputs_changed(self) -> None:
        """New input values were set (a generator restarts)."""

    async def close(self) -> None:
        """The session is closing (after its tasks were cancelled)."""


class GeneratorSource:
    """Receive mode with a function: ``fn(*inputs)``'s items, restarted when inputs change."""

    def __init__(self, host: PipelineHost, fn: Callable[..., Any]) -> None:
        self.host, self.fn = host, fn
        self._generator: Any = None
        self._stale = False

    def restart(self) -> None:
        self._stale = True

    async def next(self) -> Any:
        if self._generator is None or self._stale:
            await self.close()
            self._stale = False
            self._generator = self.fn(*self.host.inputs)
        gen = self._generator
        if inspect.isasyncgen(gen):
            try:
                return await gen.__anext__()
            except StopAsyncIteration:
                raise Ended from None
        return await self.host.call(_next_or_end, gen)

    async def close(self) -> None:
        gen, self._generator = self._generator, None
        if gen is None:
            return
        if inspect.isasyncgen(gen):
            await gen.aclose()
        else:
            await self.host.call(gen.close)


class EmitSource:
    """A handler method called for each item (``emit`` or ``video_emit``)."""

    def __init__(self, host: PipelineHost, method: Callable[[], Any], own_thread: bool) -> None:
        # A sync emit() may block until there is output (FastRTC's queue.get() idiom),
        # and for ever once the session has ended: it runs on the session's own thread.
        self.host, self.method = host, method
        self.own_thread = own_thread and not inspect.iscoroutinefunction(method)

    def restart(self) -> None:
        """A handler reads the new inputs itself."""

    async def next(self) -> Any:
        return await self.host.call(self.method, own_thread=self.own_thread)

    async def close(self) -> None:
        """The handler's ``shutdown()`` is the session's to call."""


Source = GeneratorSource | EmitSource


def _next_or_end(gen: Any) -> Any:
    try:
        return next(gen)
    except StopIteration:
        raise Ended from None


async def drain(track: MediaStreamTrack) -> None:
    """Receive and drop a track's frames until it ends."""
    try:
        while True:
            await track.recv()
    except MediaStreamError:
        return
