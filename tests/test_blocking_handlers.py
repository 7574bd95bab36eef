"""Handlers that block, never return or take their time cost only their own session.

FastRTC's documented echo blocks in ``emit()`` on ``queue.get()``; after its
session ends it blocks for ever. Its ``start_up`` runs beside the media, so a
handler may keep a connection open there for the whole session.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
from django.test import override_settings

from django_rtcstream.client import StreamClient, SyntheticVideoTrack, ToneAudioTrack
from django_rtcstream.models import StreamSession
from django_rtcstream.sessions import pool as pool_module
from django_rtcstream.sessions import manager as session_manager
from django_rtcstream.sessions.pool import HandlerPool, OwnThread
from tests import streams
from tests.media import collect, dominant_frequency


async def _until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


# -- the pool on its own (no server) -------------------------------------------------------


def test_a_call_stuck_past_the_limit_gives_up_its_place():
    pool = HandlerPool(2, stuck_after=0.2, name="test-pool")
    release = threading.Event()
    try:
        stuck = [pool.submit_as(f"stuck-{i}", "owner", release.wait) for i in range(2)]
        started = time.monotonic()
        assert pool.submit(lambda: "done").result(timeout=5) == "done"
        # Queued behind two blocked calls, it ran once they had been stuck 0.2 s.
        assert time.monotonic() - started >= 0.15
        assert pool.stats()["over_time"] == 2
        release.set()
        assert [f.result(timeout=5) for f in stuck] == [True, True]
        # The threads that were stuck went back (or ended): never more working than the bound.
        deadline = time.monotonic() + 5
        while pool.stats()["over_time"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pool.stats()["over_time"] == 0 and pool.stats()["threads"] <= 4
        assert [pool.submit(lambda i=i: i * 2).result(timeout=5) for i in range(20)] == [
            i * 2 for i in range(20)
        ]
    finally:
        release.set()
        pool.shutdown()


def test_a_call_still_running_after_its_session_ended_is_logged_and_counted(caplog, monkeypatch):
    monkeypatch.setattr(pool_module, "STUCK_WARN_AFTER", 0.3)
    pool = HandlerPool(1, stuck_after=0.2, name="test-pool")
    own = OwnThread(pool.calls, "test-own")
    release = threading.Event()
    owner = object()
    try:
        with caplog.at_level(logging.WARNING, logger="django_rtcstream.sessions.pool"):
            own.submit_as("emit() of stream 'echo' (session abc)", owner, release.wait)
            deadline = time.monotonic() + 5
            while not pool.calls.snapshot() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert pool.calls.stuck(owner) == []  # running, not yet stuck
            pool.calls.owner_ended(owner)
            assert pool.calls.stuck(owner) == []  # it may still return in a moment
            time.sleep(pool_module.ENDED_GRACE)
            assert len(pool.calls.stuck(owner)) == 1
            while "after its session ended" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.02)
        assert "emit() of stream 'echo' (session abc) has not returned" in caplog.text
        own.shutdown()
        release.set()
        while pool.calls.snapshot() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pool.calls.stuck(owner) == []
    finally:
        release.set()
        pool.shutdown()


# -- through a real server -------------------------------------------------------------------


class PausableTone(ToneAudioTrack):
    """A tone that stops sending while ``flowing`` is clear."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def recv(self):
        await self.flowing.wait()
        return await super().recv()


def _emit_blocked(webrtc_id: str) -> bool:
    """The session's handler has nothing queued and its emit() has been running for
    0.2 s: it is blocked in ``queue.get()`` (with a frame queued it returns at once)."""
    session = session_manager.manager().get(webrtc_id)
    if session is None or not session.handler.queue.empty():
        return False
    now = time.monotonic()
    return any(
        call.owner is session and call.running_for(now) >= 0.2
        for call in session.calls.pool.calls.snapshot()
    )


@pytest.fixture
def small_pool():
    """A fresh session manager whose handler pool has 4 threads (restored afterwards)."""
    from django.conf import settings

    previous = session_manager._manager
    with override_settings(RTCSTREAM={**settings.RTCSTREAM, "HANDLER_THREADS": 4}):
        session_manager._manager = None
        yield
        if session_manager._manager is not None:
            session_manager._manager.executor.shutdown()
    session_manager._manager = previous


@pytest.mark.media
@pytest.mark.django_db(transaction=True)
async def test_ten_abandoned_blocking_emit_sessions_starve_nobody(rtc_url, small_pool):
    video = StreamClient(rtc_url, "flip", video=SyntheticVideoTrack(marker_rows=240))
    await video.connect()
    try:
        await collect(video.video_frames, 5)
        while not video.video_frames.empty():
            video.video_frames.get_nowait()
        received = 0

        async def count_video():
            nonlocal received
            while True:
                await video.video_frames.get()
                received += 1

        counter = asyncio.ensure_future(count_video())
        started = time.monotonic()
        ids = []
        for _ in range(10):
            tone = PausableTone(frequency=660)
            client = StreamClient(rtc_url, "blocking_echo", audio=tone)
            await client.connect()
            frequency, level = dominant_frequency(await collect(client.audio_frames, 30))
            assert abs(frequency - 660) < 20 and level > 0.05, (frequency, level)
            ids.append(client.webrtc_id)
            # Stop sending, so that the handler's queue runs dry and emit() blocks in
            # queue.get() (with audio still arriving, the call in flight at the end may
            # be one that returns a queued frame).
            tone.flowing.clear()
            await _until(lambda: _emit_blocked(client.webrtc_id), 15, "emit() to block")
            # Abandon it: the peer connection goes, nobody hangs up over HTTP.
            await client.pc.close()
            await _record_closed(client.webrtc_id, timeout=15)
        elapsed = time.monotonic() - started
        counter.cancel()
        # The video session beside them kept its frames (30 fps sent).
        assert received >= 0.9 * 30 * elapsed, (received, elapsed)
        # Each abandoned emit() is still blocked, on a thread of its own session, and counted.
        stuck = [s async for s in StreamSession.objects.filter(webrtc_id__in=ids)]
        assert len(stuck) == 10 and all(s.stuck_calls == 1 for s in stuck), [
            (s.webrtc_id, s.stuck_calls, s.close_reason) for s in stuck
        ]
        assert session_manager.manager().executor.stats()["stuck"] >= 10
    finally:
        await video.close()


@pytest.mark.media
@pytest.mark.django_db(transaction=True)
async def test_media_flows_while_start_up_is_still_running(rtc_url):
    async with StreamClient(rtc_url, "slow_start", audio=ToneAudioTrack(frequency=440)) as client:
        started = time.monotonic()
        frequency, level = dominant_frequency(await collect(client.audio_frames, 25, timeout=8))
        assert time.monotonic() - started < 8
        assert abs(frequency - 440) < 20 and level > 0.05
        events = [e for i, e in streams.EVENTS if i == client.webrtc_id]
        assert events == ["start_up"]  # still running: it sleeps 30 s
        webrtc_id = client.webrtc_id
    await _until(
        lambda: session_manager.manager().get(webrtc_id) is None, 10, "the session to close"
    )
    # Closing cancelled the unfinished start_up, and shutdown() ran all the same.
    assert [e for i, e in streams.EVENTS if i == webrtc_id] == [
        "start_up",
        "start_up_cancelled",
        "shutdown",
    ]


@pytest.mark.media
@pytest.mark.django_db(transaction=True)
async def test_a_failing_start_up_fails_the_session_with_its_error(rtc_url):
    client = StreamClient(rtc_url, "failing_start", audio=ToneAudioTrack())
    await client.connect()
    try:
        message = await client.next_message("error", timeout=10)
        assert message["data"] == "Boom: start_up failed on purpose"
        record = await _record_closed(client.webrtc_id)
        assert (record.state, record.close_reason) == ("failed", "handler_error: Boom")
        assert [e for i, e in streams.EVENTS if i == client.webrtc_id] == ["start_up", "shutdown"]
    finally:
        await client.close()


async def _record_closed(webrtc_id, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        record = await StreamSession.objects.filter(webrtc_id=webrtc_id).afirst()
        if record is not None and not record.is_live:
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"{webrtc_id} is still live")
        await asyncio.sleep(0.05)
