import asyncio
import numpy as np
import pytest
from django_rtcstream.client import StreamClient, SyntheticVideoTrack

pytestmark = pytest.mark.django_db(transaction=True)

async def test_flip(rtc_url):
    async with StreamClient(rtc_url, "flip", video=SyntheticVideoTrack()) as client:
        frame = await asyncio.wait_for(client.video_frames.get(), 10)
        for _ in range(5):
            frame = await asyncio.wait_for(client.video_frames.get(), 10)
        a = frame.to_ndarray(format="bgr24")
        print(a.shape, a[:10].mean(), a[-10:].mean())
        assert a[-10:].mean() > 200 and a[:10].mean() < 60
