"""Giving the heap that ended sessions freed back to the operating system.

A session allocates tens of megabytes in C (codec contexts, frame buffers,
resamplers) across several threads; when it ends, all of it is freed, but
glibc's allocator keeps most of the freed pages mapped for reuse, spread over
the per-thread arenas. Under churn the process's RSS then climbs well above
what it really holds (measured by tests/churn.py: 163 -> 211 MB over 300
open-and-abort cycles while live objects were back at baseline; 167 MB after
``malloc_trim``). ``trim()`` returns those pages. Elsewhere (musl, macOS) it
does nothing.
"""

from __future__ import annotations

import ctypes
import functools
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
