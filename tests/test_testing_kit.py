"""django_rtcstream.testing: what a project's own tests use, used here the same way."""

from __future__ import annotations

import numpy as np
import pytest

from django_rtcstream import Stream
from django_rtcstream.client import SyntheticVideoTrack
from django_rtcstream.models import StreamSession
from django_rtcstream.registry import get_stream
from django_rtcstream.testing import live_server, override_streams, stream_client
from tests.media import mean_brightness

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.media]


def darken(frame):
    return (frame // 2).astype(np.uint8)


async def test_a_project_tests_its_stream_end_to_end_with_the_kit():
    dark = Stream(darken, modality="video", mode="send-receive")
    with override_streams(dark=dark):
        assert get_stream("dark") is dark
        with pytest.raises(LookupError):
            get_stream("flip")  # only the overridden streams, unless keep=True
        async with (
            live_server() as base_url,
            stream_client(base_url, "dark", video=SyntheticVideoTrack()) as client,
        ):
            frame = await client.video_frames.get()
            assert mean_brightness(frame) < 100
            record = await StreamSession.objects.aget(webrtc_id=client.webrtc_id)
            assert record.stream == "dark"
    with override_streams(keep=True, dark="tests.test_testing_kit.other"):
        assert get_stream("flip").name == "flip" and get_stream("dark") is other


other = Stream(darken, modality="video", mode="send-receive")
