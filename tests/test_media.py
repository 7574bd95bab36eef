"""Every modality x mode over real aiortc peer connections on loopback.

The server is the test project under uvicorn; the client is the package's own
aiortc client. What comes back must be the handler's work on what was sent.
"""

from __future__ import annotations

import asyncio

import pytest

from django_rtcstream.client import StreamClient, SyntheticVideoTrack, ToneAudioTrack
from django_rtcstream.registry import get_stream
from tests import streams
from tests.media import collect, dominant_frequency, drain, mean_brightness, rows_brightness

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.media]


async def outputs_of(stream_name, webrtc_id, n, timeout=10.0):
    out = []

    async def take():
        async for output in get_stream(stream_name).output_stream(webrtc_id):
            out.append(output)
            if len(out) >= n:
                return

    await asyncio.wait_for(take(), timeout)
    return out


async def test_video_send_receive_flips_the_marker(rtc_url):
    async with StreamClient(rtc_url, "flip", video=SyntheticVideoTrack()) as client:
        frames = await collect(client.video_frames, 10)
    top, bottom = rows_brightness(frames[-1])
    # Sent: white top rows. Back: white bottom rows.
    assert bottom > 200 and top < 60, (top, bottom)


async def test_video_send_handler_sees_frames_and_reports(rtc_url):
    async with StreamClient(rtc_url, "video-send", video=SyntheticVideoTrack()) as client:
        outputs = await outputs_of("video-send", client.webrtc_id, 2)
        warning = await client.next_message("warning")
        message = await client.next_message("fetch_output")
        assert client.received["video"] == 0  # send mode: nothing comes back
    counts = [o.args[0] for o in outputs]
    assert counts == sorted(counts) and counts[0] % 5 == 0
    assert streams.SEEN[client.webrtc_id] >= 10
    assert message["via"] == "datachannel"
    assert warning["data"] == "first frame seen"


async def test_video_receive_generator_streams_without_input_and_follows_set_input(rtc_url):
    async with StreamClient(rtc_url, "video-receive") as client:
        frames = await collect(client.video_frames, 5)
        assert abs(mean_brightness(frames[-1]) - 200) < 15
        await get_stream("video-receive").aset_input(client.webrtc_id, 60)
        await asyncio.sleep(0.5)
        await drain(client.video_frames)
        frames = await collect(client.video_frames, 5)
        assert abs(mean_brightness(frames[-1]) - 60) < 15


async def test_audio_send_receive_echoes_a_tone_and_follows_set_input(rtc_url):
    async with StreamClient(rtc_url, "echo", audio=ToneAudioTrack(440)) as client:
        await collect(client.audio_frames, 25)
        frequency, level = dominant_frequency(await collect(client.audio_frames, 50))
        assert abs(frequency - 440) < 15 and level > 0.1, (frequency, level)
        await get_stream("echo").aset_input(client.webrtc_id, 0.0)
        await asyncio.sleep(0.5)
        await drain(client.audio_frames)
        _, level = dominant_frequency(await collect(client.audio_frames, 25))
        assert level < 0.01


async def test_audio_send_async_handler_receives_resampled_audio(rtc_url):
    async with StreamClient(rtc_url, "audio-send", audio=ToneAudioTrack(440)) as client:
        outputs = await outputs_of("audio-send", client.webrtc_id, 2)
        assert client.received["audio"] == 0
    assert [o.args[0] % 25 for o in outputs] == [0, 0]


async def test_audio_receive_generator_plays_a_tone_and_restarts_on_input(rtc_url):
    async with StreamClient(rtc_url, "tone") as client:
        await collect(client.audio_frames, 10)
        frequency, level = dominant_frequency(await collect(client.audio_frames, 50))
        assert abs(frequency - 440) < 15 and level > 0.1
        await get_stream("tone").aset_input(client.webrtc_id, 1000)
        await asyncio.sleep(0.4)
        await drain(client.audio_frames)
        frequency, _ = dominant_frequency(await collect(client.audio_frames, 50))
        assert abs(frequency - 1000) < 20


async def test_audio_video_send_receive(rtc_url):
    async with StreamClient(
        rtc_url, "av", video=SyntheticVideoTrack(), audio=ToneAudioTrack(660)
    ) as client:
        outputs = await outputs_of("av", client.webrtc_id, 1)
        assert outputs[0].args[0] == "video"  # video_receive's AdditionalOutputs
        video = await collect(client.video_frames, 10)
        await collect(client.audio_frames, 25)
        frequency, level = dominant_frequency(await collect(client.audio_frames, 50))
    top, bottom = rows_brightness(video[-1])
    assert bottom > 200 and top < 60
    assert abs(frequency - 660) < 15 and level > 0.1


async def test_audio_video_send(rtc_url):
    async with StreamClient(
        rtc_url, "av-send", video=SyntheticVideoTrack(), audio=ToneAudioTrack()
    ) as client:
        outputs = await outputs_of("av-send", client.webrtc_id, 1)
        assert client.received == {"video": 0, "audio": 0}
    assert outputs[0].args[0] == "video"


async def test_audio_video_receive(rtc_url):
    async with StreamClient(rtc_url, "av-receive") as client:
        video = await collect(client.video_frames, 5)
        await collect(client.audio_frames, 10)
        frequency, level = dominant_frequency(await collect(client.audio_frames, 50))
    assert abs(mean_brightness(video[-1]) - 200) < 15
    assert abs(frequency - 440) < 15 and level > 0.1


async def test_set_input_reaches_a_function_video_handler_as_its_first_extra_argument(rtc_url):
    async with StreamClient(rtc_url, "gain", video=SyntheticVideoTrack(marker_rows=240)) as client:
        frames = await collect(client.video_frames, 5)
        assert mean_brightness(frames[-1]) > 200
        await get_stream("gain").aset_input(client.webrtc_id, 0.25)
        await asyncio.sleep(0.5)
        await drain(client.video_frames)
        frames = await collect(client.video_frames, 5)
        assert abs(mean_brightness(frames[-1]) - 235 * 0.25) < 15


async def test_a_slow_video_handler_drops_stale_frames_instead_of_queueing(rtc_url):
    from django_rtcstream.sessions.manager import manager

    async with StreamClient(rtc_url, "slow", video=SyntheticVideoTrack(fps=30)) as client:
        await collect(client.video_frames, 3)
        await asyncio.sleep(2.0)
        session = manager().get(client.webrtc_id)
        latest = session.pipelines.video_in
        called = streams.SEEN[client.webrtc_id]
        # ~30 fps in, ~10 calls a second: two thirds are dropped, none wait in a queue
        # (aiortc's own queue of decoded frames stays drained).
        assert latest.received > called * 2 and latest.dropped >= latest.received - called - 3
        assert latest.track._queue.qsize() <= 2
