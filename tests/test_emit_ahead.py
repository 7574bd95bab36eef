"""sessions/ahead.py: a sync emit() called ahead on the session's own thread gives the
same results, in order, as calls made one by one, and is accounted the same way."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import threading
import time

import pytest

from django_rtcstream.sessions.ahead import EmitAhead
from django_rtcstream.sessions.pool import CallRegistry, OwnThread


def _ahead(fn, registry: CallRegistry, owner: object) -> tuple[EmitAhead, OwnThread]:
    thread = OwnThread(registry, "test-emit-ahead")
    ahead = EmitAhead(
        fn,
        thread,
        registry,
        asyncio.get_running_loop(),
        contextvars.copy_context(),
        "emit() of test",
        owner,
    )
    return ahead, thread


def _until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


async def test_results_come_in_order_and_the_handler_runs_at_most_two_ahead():
    counter = itertools.count()
    made: list[int] = []

    def emit() -> int:
        n = next(counter)
        made.append(n)
        return n

    registry, owner = CallRegistry(), object()
    ahead, thread = _ahead(emit, registry, owner)
    try:
        got = [await ahead.next() for _ in range(20)]
        assert got == list(range(20))
        # The thread may have made the next ones, never more than two past what was taken.
        await asyncio.to_thread(_until, lambda: len(made) >= 21)
        assert 21 <= len(made) <= 22
    finally:
        ahead.stop()
        thread.shutdown()


async def test_an_exception_is_raised_by_next_and_the_thread_stops_calling():
    calls = itertools.count()

    def emit() -> int:
        n = next(calls)
        if n == 2:
            raise ValueError("boom")
        return n

    registry = CallRegistry()
    ahead, thread = _ahead(emit, registry, object())
    try:
        assert [await ahead.next(), await ahead.next()] == [0, 1]
        with pytest.raises(ValueError, match="boom"):
            await ahead.next()
        await asyncio.sleep(0.05)
        assert next(calls) == 3  # nothing called emit after it raised
    finally:
        ahead.stop()
        thread.shutdown()


async def test_each_call_is_a_handler_call_in_the_registry_and_the_loop_is_not():
    release = threading.Event()
    owner = object()

    def emit() -> str:
        release.wait(10)  # blocks like an echo's queue.get() until input comes
        return "frame"

    registry = CallRegistry()
    ahead, thread = _ahead(emit, registry, owner)
    try:
        pending = asyncio.ensure_future(ahead.next())
        assert await asyncio.to_thread(_until, lambda: registry.running(owner) == 1)
        assert [c.label for c in registry.snapshot()] == ["emit() of test"]
        registry.owner_ended(owner)  # the session ended with the call blocked: stuck
        await asyncio.sleep(0.35)
        assert len(registry.stuck(owner)) == 1
        release.set()
        assert await asyncio.wait_for(pending, 5) == "frame"
    finally:
        ahead.stop()
        thread.shutdown()
    # Stopped: the thread's loop ends once its call returns; no call is left running.
    assert await asyncio.to_thread(_until, lambda: registry.running(owner) == 0)
    assert await asyncio.to_thread(_until, lambda: not thread._thread.is_alive())
