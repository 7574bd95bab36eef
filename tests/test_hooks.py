"""The FastRTC session API and the HTTP hooks, end to end."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest

from django_rtcstream.client import SignalingFailed, StreamClient, SyntheticVideoTrack, ToneAudioTrack, http_json
from django_rtcstream.exceptions import InvalidInput, UnknownSession
from django_rtcstream.registry import get_stream
from tests.media import collect, drain, mean_brightness

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.media]


async def test_set_input_from_a_sync_thread_reaches_the_handler(rtc_url):
    stream = get_stream("echo")
    async with StreamClient(rtc_url, "echo", audio=ToneAudioTrack()) as client:
        await collect(client.audio_frames, 10)
        await asyncio.to_thread(stream.set_input, client.webrtc_id, 0.0)
        await asyncio.sleep(0.4)
        await drain(client.audio_frames)
        frames = await collect(client.audio_frames, 20)
        from tests.media import dominant_frequency

        assert dominant_frequency(frames)[1] < 0.01


async def test_set_input_validates_against_the_declared_inputs(rtc_url):
    stream = get_stream("gain")
    with pytest.raises(InvalidInput) as error:
        stream.set_input("whoever", 1.5)
    assert "level" in error.value.errors
    with pytest.raises(InvalidInput):
        stream.set_input("whoever", 0.5, 0.7)
    with pytest.raises(UnknownSession):
        await stream.aset_input("nobody", 0.5)


async def test_fetch_latest_output_and_output_stream(rtc_url):
    stream = get_stream("video-send")
    async with StreamClient(rtc_url, "video-send", video=SyntheticVideoTrack()) as client:
        latest = await stream.fetch_latest_output(client.webrtc_id, timeout=5)
        assert isinstance(latest.args[0], int) and latest.args[0] % 5 == 0
        await asyncio.sleep(0.5)
        newer = await stream.fetch_latest_output(client.webrtc_id)
        assert newer.args[0] > latest.args[0]
    with pytest.raises(UnknownSession):
        async for _ in stream.output_stream("never-existed"):
            pass


async def test_input_hook_validates_by_name_and_changes_the_handler(rtc_url):
    async with StreamClient(rtc_url, "gain", video=SyntheticVideoTrack(marker_rows=240)) as client:
        await collect(client.video_frames, 3)
        with pytest.raises(SignalingFailed) as bad:
            await client.set_input(level=3)
        assert bad.value.status == 400 and "level" in bad.value.body["errors"]
        with pytest.raises(SignalingFailed) as unknown:
            await client.set_input(colour="red")
        assert unknown.value.body["errors"] == {"colour": ["Unknown input."]}
        reply = await client.set_input(level=0.5)
        assert reply == {"status": "success", "inputs": {"level": 0.5}}
        await asyncio.sleep(0.4)
        await drain(client.video_frames)
        assert abs(mean_brightness((await collect(client.video_frames, 3))[-1]) - 117) < 15


async def test_sse_output_hook_streams_outputs_until_the_session_ends(rtc_url):
    async with StreamClient(rtc_url, "video-send", video=SyntheticVideoTrack()) as client:
        url = f"{rtc_url}video-send/outputs?webrtc_id={client.webrtc_id}&token={client.token}"

        def read_events():
            events = []
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.headers["Content-Type"] == "text/event-stream"
                for raw in response:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("data: "):
                        events.append(json.loads(line[6:]))
                    if len(events) == 2:
                        return events
            return events

        events = await asyncio.to_thread(read_events)
    assert all(isinstance(e[0], int) for e in events) and events[1][0] > events[0][0]
    status, body = await http_json(f"{rtc_url}video-send/outputs?webrtc_id=nobody")
    assert status == 404 and body["meta"]["error"] == "unknown_connection"
