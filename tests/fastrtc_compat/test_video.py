"""Video programs end to end: a real server, a real aiortc client, VP8 both ways."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from django_rtcstream.client import StreamClient, SyntheticVideoTrack
from django_rtcstream.registry import get_stream
from tests.fastrtc_compat.helpers import outputs_of, sse_events, wait_closed, wait_until
from tests.fastrtc_compat.programs import context_warning, core_concepts, skip_frames
from tests.media import collect, drain, mean_brightness, rows_brightness

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.media]


def top_rows_bgr(frame):
    """Mean (B, G, R) of the top tenth of a frame."""
    a = frame.to_ndarray(format="bgr24")
    return a[: a.shape[0] // 10].reshape(-1, 3).mean(axis=0)


def is_flipped(frame):
    top, bottom = rows_brightness(frame)
    return bottom > 200 and top < 60  # sent: white top rows


async def test_quickstart_flip(rtc_url):
    async with StreamClient(rtc_url, "flip", video=SyntheticVideoTrack()) as client:
        frames = await collect(client.video_frames, 10)
    assert is_flipped(frames[-1]), rows_brightness(frames[-1])


async def test_core_concepts_flip_gets_its_slider_value(rtc_url):
    core_concepts.sliders_seen.clear()
    async with StreamClient(rtc_url, "core_concepts", video=SyntheticVideoTrack()) as client:
        frames = await collect(client.video_frames, 10)
        assert is_flipped(frames[-1]), rows_brightness(frames[-1])
        assert set(core_concepts.sliders_seen) == {0.3}  # the slider's value, after the frame
        get_stream("core_concepts").set_input(client.webrtc_id, 0.75)
        await wait_until(lambda: core_concepts.sliders_seen[-1] == 0.75, what="the new value")


async def test_detector_with_a_confidence_slider_and_additional_outputs(rtc_url):
    stream = get_stream("object_detection")
    async with StreamClient(rtc_url, "object_detection", video=SyntheticVideoTrack()) as client:
        outputs = await outputs_of("object_detection", client.webrtc_id, 3)
        frames = await collect(client.video_frames, 5)
        # Two bright bands of eight (the white top quarter) pass 0.3 and are painted green.
        assert [o.args for o in outputs] == [(2,), (2,), (2,)]
        b, g, r = top_rows_bgr(frames[-1])
        assert g > 180 and b < 90 and r < 90, (b, g, r)
        assert (await sse_events(client, 2)) == [[2], [2]]

        await client.set_input(confidence_threshold=0.95)  # the input hook
        await outputs_of("object_detection", client.webrtc_id, 1, accept=lambda o: o.args == (0,))
        await drain(client.video_frames)
        b, g, r = top_rows_bgr((await collect(client.video_frames, 3))[-1])
        assert min(b, g, r) > 200, (b, g, r)  # nothing detected: the frame as sent
    assert stream.additional_outputs_handler(None, 7) == 7


async def test_receive_mode_generator_plays_the_capture_to_its_end(rtc_url):
    async with StreamClient(rtc_url, "video_generation") as client:
        first = await collect(client.video_frames, 3)
        end = await client.next_message("end_stream", timeout=15)
        webrtc_id = client.webrtc_id
        frames = []
        while not client.video_frames.empty():
            frames.append(client.video_frames.get_nowait())
    assert mean_brightness(first[0]) < 80  # the capture starts dark (20, 22, ...)
    assert mean_brightness(frames[-1]) > 160  # and ends bright (198)
    assert end["data"] == "handler_finished"
    closed = await wait_closed(webrtc_id)
    assert closed.close_reason == "handler_finished"


async def test_current_context_and_warning(rtc_url):
    dark = SyntheticVideoTrack(marker_rows=0)
    async with StreamClient(rtc_url, "context_warning", video=dark) as client:
        warning = await client.next_message("warning")
        outputs = await outputs_of("context_warning", client.webrtc_id, 2)
        frames = await collect(client.video_frames, 3)
    assert warning["data"] == warning["message"] == "It is too dark to see anything"
    assert outputs[0].args[0] == client.webrtc_id
    assert [o.args[1] % 15 for o in outputs] == [0, 0]
    assert context_warning.frames_seen[client.webrtc_id] >= 30
    assert mean_brightness(frames[-1]) < 40  # returned as it came


class SwitchableTrack(SyntheticVideoTrack):
    """The test card until ``switch()``, then all white."""

    def switch(self):
        self.image = np.full_like(self.image, 235)


async def test_skip_frames_keeps_a_slow_function_on_the_latest_frame(rtc_url):
    skip_frames.calls.clear()
    track = SwitchableTrack()
    async with StreamClient(rtc_url, "skip_frames", video=track) as client:
        frames = await collect(client.video_frames, 3)
        assert is_flipped(frames[-1])
        await wait_until(lambda: len(skip_frames.calls) >= 8, what="8 calls")  # ~1.6 s
        # ~5 calls a second for 30 frames a second: most frames are skipped...
        assert track.sent > 3 * len(skip_frames.calls), (track.sent, len(skip_frames.calls))
        track.switch()
        switched = time.monotonic()

        async def white():
            while mean_brightness(await client.video_frames.get()) < 200:
                pass

        await asyncio.wait_for(white(), 10)
        # ...so what comes back is the newest frame: ~0.4 s here (one call plus the
        # codecs). In order (skip_frames=False) it comes from a second-long backlog
        # of frames: ~1.2 s; FastRTC's unbounded queue would fall further behind.
        assert time.monotonic() - switched < 0.8


async def test_video_stream_handler_fps_paces_the_generator(rtc_url):
    async with StreamClient(rtc_url, "video_fps") as client:
        outputs = await outputs_of("video_fps", client.webrtc_id, 2, timeout=10)
        assert client.received["video"] > 0
    fps = outputs[-1].args[0]
    assert 15 <= fps <= 25, fps  # VideoStreamHandler(generation, fps=20)
    assert get_stream("video_fps").additional_outputs_handler(3.0, 19.5) == 19.5
