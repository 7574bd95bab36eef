"""Fire-and-forget tasks: a failure is logged once, with its session, never lost."""

from __future__ import annotations

import asyncio
import gc
import logging

from django_rtcstream import background


async def test_a_failing_background_task_is_logged_once_with_its_session(caplog):
    async def boom():
        raise RuntimeError("socket gone")

    with caplog.at_level(logging.WARNING):
        task = background.start(boom(), "socket player", webrtc_id="abc")
        await asyncio.wait({task})
        del task
        gc.collect()
        await asyncio.sleep(0)
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if "socket player of session abc failed" in m] != []
    assert not [m for m in messages if "never retrieved" in m]


async def test_on_error_decides_and_cancelling_is_no_error(caplog):
    seen = []

    async def boom():
        raise ValueError("x")

    task = background.start(boom(), "t", on_error=seen.append)
    await asyncio.wait({task})
    assert [type(e) for e in seen] == [ValueError]
    sleeper = background.start(asyncio.sleep(10), "sleeper", on_error=seen.append)
    await asyncio.sleep(0)
    sleeper.cancel()
    await asyncio.wait({sleeper})
    assert len(seen) == 1 and "sleeper" not in caplog.text
