"""session_started, session_ended and inputs_changed, sent on the owning worker."""

from __future__ import annotations

import asyncio

import pytest

from django_rtcstream import signals
from django_rtcstream.client import StreamClient, SyntheticVideoTrack, ToneAudioTrack
from django_rtcstream.models import StreamSession
from django_rtcstream.registry import get_stream
from tests.media import collect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.media]


class Heard:
    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.changed = asyncio.Event()

    def receiver(self, name):
        loop = asyncio.get_running_loop()

        def receive(sender, **kwargs):  # a sync receiver: runs in a thread, may use the ORM
            kwargs["record_exists"] = StreamSession.objects.filter(pk=kwargs["record_id"]).exists()
            self.calls.append((name, {"sender": sender, **kwargs}))
            loop.call_soon_threadsafe(self.changed.set)

        return receive

    async def wait_for(self, name, n=1, timeout=10.0):
        async def until():
            while sum(1 for c, _ in self.calls if c == name) < n:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)
        return [k for c, k in self.calls if c == name]


async def test_signals_carry_the_session_and_its_end(rtc_url):
    heard = Heard()
    gain = get_stream("gain")
    receivers = {
        name: heard.receiver(name)
        for name in ("session_started", "session_ended", "inputs_changed")
    }
    for name, receive in receivers.items():
        getattr(signals, name).connect(receive, sender=gain, weak=False)
    try:
        async with StreamClient(rtc_url, "gain", video=SyntheticVideoTrack()) as client:
            await collect(client.video_frames, 3)
            (started,) = await heard.wait_for("session_started")
            assert started["sender"] is gain and started["stream"] is gain
            assert (started["webrtc_id"], started["channel"], started["record_exists"]) == (
                client.webrtc_id,
                "webrtc",
                True,
            )
            await client.set_input(level=0.5)
            (changed,) = await heard.wait_for("inputs_changed")
            assert (changed["inputs"], changed["previous"]) == ([0.5], [1.0])
            webrtc_id = client.webrtc_id
        (ended,) = await heard.wait_for("session_ended")
        assert ended["webrtc_id"] == webrtc_id and ended["reason"] == "client_hangup"
        assert ended["state"] == "closed" and ended["counters"]["frames_in"] > 0
        record = await StreamSession.objects.aget(pk=ended["record_id"])
        assert record.close_reason == "client_hangup"  # the record said so before the signal
    finally:
        for name, receive in receivers.items():
            getattr(signals, name).disconnect(receive, sender=gain)


async def test_a_receiver_that_raises_harms_nobody(rtc_url, caplog):
    echo = get_stream("echo")

    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    signals.session_started.connect(broken, sender=echo, weak=False)
    try:
        async with StreamClient(rtc_url, "echo", audio=ToneAudioTrack()) as client:
            await collect(client.audio_frames, 10)  # media flows all the same
            for _ in range(200):
                if "receiver bug" in caplog.text:
                    break
                await asyncio.sleep(0.02)
        assert "A session_started receiver" in caplog.text and "receiver bug" in caplog.text
    finally:
        signals.session_started.disconnect(broken, sender=echo)
