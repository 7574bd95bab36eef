"""Giving the memory of ended sessions back to the operating system.

A session allocates tens of megabytes in C (codec contexts, frame buffers,
resamplers) across several threads. When it ends, two things keep that memory:

- its objects form reference cycles (peer connection and transports, session
  and handler), so they wait for the cyclic garbage collector's next full pass,
  which comes when Python decides (after 80 churn cycles, one collection freed
  60,000 objects);
- glibc's allocator keeps freed pages mapped for reuse, spread over its
  per-thread arenas.

Under churn the process's RSS then climbs well above what it holds, while the
live objects are back at baseline (tests/churn.py measures it; figures in
bench/README.md, "Figures the code cites"). ``release()``
returns those pages, and collects the garbage first when no session is live
(a full collection holds the interpreter for tens of milliseconds, which live
media would feel). On other C libraries (musl, macOS) it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import gc
import logging
import time
from typing import Any

logger = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> Any:
    try:
        fn = ctypes.CDLL(None).malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


def available() -> bool:
    return _malloc_trim() is not None


def trim() -> bool:
    """Return free heap pages to the OS (blocking: call it off the event loop).

    True if the allocator released memory.
    """
    fn = _malloc_trim()
    if fn is None:
        return False
    started = time.perf_counter()
    released = bool(fn(0))
    logger.debug("malloc_trim took %.1f ms", (time.perf_counter() - started) * 1000)
    return released


async def release(*, idle: bool) -> None:
    """After sessions ended: collect their garbage if ``idle`` (no session is live), then
    trim the heap, off the event loop."""
    if not available():
        return
    if idle:
        gc.collect()
    await asyncio.to_thread(trim)
