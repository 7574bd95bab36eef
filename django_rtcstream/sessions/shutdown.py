"""This worker is shutting down: what must end before its server can stop.

Servers tell an ASGI application late. uvicorn sends ``lifespan.shutdown``
only once every connection has closed, and an SSE output stream stays open
as long as its session lives, which, with sessions closed at lifespan
shutdown, is for ever: the worker never exited. So ``django_rtcstream.asgi``
calls ``begin()`` as soon as the server starts stopping (from the server's
own SIGTERM / SIGINT handler, or daphne's reactor shutdown) and SSE streams
end on it (``wait()``), while the worker's sessions close.

Light on purpose: the SSE hook imports it, and nothing here imports the
media stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

_begun = False
_waiters: set[asyncio.Future[None]] = set()
_open_streams = 0


def begun() -> bool:
    """Whether this worker has begun shutting down."""
    return _begun


def begin() -> None:
    """Mark this worker as shutting down and wake every ``wait()`` (idempotent)."""
    global _begun
    _begun = True
    for waiter in list(_waiters):
        with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits there
            waiter.get_loop().call_soon_threadsafe(_wake, waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def wait() -> None:
    """Return once this worker begins shutting down."""
    if _begun:
        return
    waiter = asyncio.get_running_loop().create_future()
    _waiters.add(waiter)
    try:
        await waiter
    finally:
        _waiters.discard(waiter)


@contextlib.contextmanager
def open_stream() -> Iterator[None]:
    """Count an open SSE stream while the block runs (``streams_ended`` waits for it)."""
    global _open_streams
    _open_streams += 1
    try:
        yield
    finally:
        _open_streams -= 1


async def streams_ended(timeout: float = 2.0) -> None:
    """Wait (at most ``timeout`` s) until every SSE stream of this worker has ended, and
    a moment more for their last bytes to be written. Daphne stops its reactor once its
    shutdown triggers are done; a worker with no session of its own to close would
    otherwise stop before its streams had sent ``event: end``."""
    deadline = time.monotonic() + timeout
    # A poll, not an event: the count is kept by plain context managers in any thread.
    while _open_streams and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)


def reset() -> None:
    """Serving again: a new server started in this process (a lifespan startup)."""
    global _begun
    _begun = False
