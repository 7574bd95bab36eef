"""Audio-video programs end to end."""

from __future__ import annotations

import pytest

from django_rtcstream.client import StreamClient, SyntheticVideoTrack, ToneAudioTrack
from tests.fastrtc_compat.test_audio import ECHO_RMS
from tests.media import collect, dominant_frequency, rows_brightness

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.media]


async def test_audio_video_handler_echoes_audio_and_flips_video(rtc_url):
    async with StreamClient(
        rtc_url, "av_echo", video=SyntheticVideoTrack(), audio=ToneAudioTrack(550)
    ) as client:
        video = await collect(client.video_frames, 10)
        await collect(client.audio_frames, 25)
        frequency, level = dominant_frequency(await collect(client.audio_frames, 50))
    top, bottom = rows_brightness(video[-1])
    assert bottom > 200 and top < 60, (top, bottom)
    assert abs(frequency - 550) < 15 and abs(level - ECHO_RMS) < 0.04, (frequency, level)


async def test_async_audio_video_handler_with_queues_and_resampled_audio(rtc_url):
    async with StreamClient(
        rtc_url, "av_async", video=SyntheticVideoTrack(), audio=ToneAudioTrack(550)
    ) as client:
        video = await collect(client.video_frames, 10)
        await collect(client.audio_frames, 25)
        frequency, level = dominant_frequency(await collect(client.audio_frames, 50))
    top, bottom = rows_brightness(video[-1])
    assert top > 200 and bottom < 60, (top, bottom)  # reflected back as it came
    # 16 kHz chunks emitted by a 24 kHz handler: resampled, still the tone.
    assert abs(frequency - 550) < 15 and abs(level - ECHO_RMS) < 0.04, (frequency, level)
