"""Live session stats (sessions/stats.py): sampled from real sessions, kept on the record,
shown in the API, the admin and the stream page's data channel."""

from __future__ import annotations

import asyncio

import pytest
from django.conf import settings
from django.test import override_settings

from django_rtcstream.client import StreamClient, SyntheticVideoTrack, ToneAudioTrack
from django_rtcstream.models import StreamSession
from django_rtcstream.sessions import runtime
from tests.media import collect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.media]

FAST = {"STATS_INTERVAL": 0.3, "HEARTBEAT_INTERVAL": 0.5}


@pytest.fixture
def fast_stats():
    with override_settings(RTCSTREAM={**settings.RTCSTREAM, **FAST}):
        yield


async def until(predicate, timeout=15.0, step=0.05):
    """Wait until ``predicate()`` (sync or async) is truthy; its value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(step)


async def test_smoke(fast_stats, rtc_url):
    async with StreamClient(rtc_url, "echo", audio=ToneAudioTrack()) as client:
        await collect(client.audio_frames, 3)
        session = runtime.local_session(client.webrtc_id)
        await until(lambda: session.stats.latest and session.stats.latest["rtt_ms"])
        print(session.stats.latest)
        print(list(session.stats.costs))
