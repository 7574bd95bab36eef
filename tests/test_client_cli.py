"""``python -m django_rtcstream.client`` streams to a live server and saves what comes back."""

from __future__ import annotations

import asyncio
import sys

import av
import pytest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.media]


async def test_cli_streams_and_records_the_flipped_video(rtc_url, tmp_path):
    out = tmp_path / "out.mp4"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "django_rtcstream.client",
        rtc_url,
        "flip",
        "--seconds",
        "3",
        "--output",
        str(out),
        "--ice-host",
        "127.0.0.1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert b"connected: session" in stdout
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(frames) > 20
    last = frames[-1]
    assert last[-20:].mean() > 200 and last[:20].mean() < 60
