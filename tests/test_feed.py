"""``SerialFeed`` and ``Arrivals``: per-frame handler calls off the loop, in order.

Real threads and a real event loop; the end-to-end behaviour (a failing sync
``receive`` closes its session) is in ``test_lifecycle``.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from django_rtcstream.media.arrivals import Arrivals
from django_rtcstream.media.feed import SerialFeed

LABEL: contextvars.ContextVar[str] = contextvars.ContextVar("label", default="none")


@pytest.fixture
def pool():
    executor = ThreadPoolExecutor(4)
    yield executor
    executor.shutdown(wait=True)


def _feed(pool, fn, *, errors=None, after=None):
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    context.run(LABEL.set, "session-7")
    return SerialFeed(
        loop, pool, fn, context, [].append if errors is None else errors.append, after
    )


async def test_items_are_handled_in_order_one_at_a_time_in_the_session_context(pool):
    seen, running, overlaps = [], [0], []
    all_seen = threading.Event()

    def handle(item):
        running[0] += 1
        overlaps.append(running[0])
        time.sleep(0.001)
        seen.append((item, LABEL.get(), threading.current_thread().name))
        running[0] -= 1
        if len(seen) == 200:
            all_seen.set()

    feed = _feed(pool, handle)
    for i in range(200):
        feed.put(i)
        if i % 7 == 0:
            await asyncio.sleep(0)
    assert await asyncio.to_thread(all_seen.wait, 30)
    assert [item for item, _, _ in seen] == list(range(200))
    assert {label for _, label, _ in seen} == {"session-7"}
    assert max(overlaps) == 1
    assert all(name != threading.current_thread().name for _, _, name in seen)


async def test_the_first_error_stops_the_feed_and_reaches_the_loop(pool):
    errors, seen = [], []

    def handle(item):
        if item == 3:
            raise ValueError("bad frame")
        seen.append(item)

    feed = _feed(pool, handle, errors=errors)
    for i in range(10):
        feed.put(i)
    await asyncio.sleep(0.2)
    feed.put(11)  # after the failure: dropped
    await asyncio.sleep(0.1)
    assert seen == [0, 1, 2]
    assert [str(e) for e in errors] == ["bad frame"]
    assert feed.backlog == 0


async def test_a_slow_handler_makes_the_producer_wait_instead_of_queueing(pool):
    gate = threading.Event()
    feed = _feed(pool, lambda item: gate.wait(5))
    for i in range(20):
        feed.put(i)
    waiting = asyncio.ensure_future(feed.wait_backlog(5))
    await asyncio.sleep(0.1)
    assert not waiting.done() and feed.backlog == 19
    gate.set()
    await asyncio.wait_for(waiting, 5)
    assert feed.backlog <= 5


async def test_stop_drops_what_is_queued_and_releases_a_waiting_producer(pool):
    gate, seen = threading.Event(), []
    feed = _feed(pool, lambda item: (gate.wait(5), seen.append(item)))
    for i in range(10):
        feed.put(i)
    waiting = asyncio.ensure_future(feed.wait_backlog(0))
    await asyncio.sleep(0.05)
    feed.stop()
    await asyncio.wait_for(waiting, 5)
    gate.set()
    await asyncio.sleep(0.1)
    assert seen == [0]  # the call that was running finishes; nothing after it


async def test_arrivals_wake_a_waiting_pump_from_the_pool_and_never_miss_a_tick(pool):
    loop = asyncio.get_running_loop()
    arrivals = Arrivals()
    # A tick from a thread while the pump sleeps wakes it well before the timeout.
    seen = arrivals.count
    loop.call_later(0.05, pool.submit, arrivals.tick_threadsafe)
    started = loop.time()
    await arrivals.wait_after(seen, 5)
    assert arrivals.count == seen + 1 and loop.time() - started < 1
    # A tick that landed before the wait: no wait at all.
    seen = arrivals.count
    pool.submit(arrivals.tick_threadsafe).result()
    started = loop.time()
    await arrivals.wait_after(seen, 5)
    assert loop.time() - started < 0.05
    # Nothing arrives: the timeout bounds the wait.
    started = loop.time()
    await arrivals.wait_after(arrivals.count, 0.05)
    assert 0.04 <= loop.time() - started < 1
    # Many racing ticks from threads: every wait returns promptly.
    for _ in range(200):
        seen = arrivals.count
        pool.submit(arrivals.tick_threadsafe)
        await asyncio.wait_for(arrivals.wait_after(seen, 10), 2)
