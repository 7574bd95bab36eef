"""A worker's WebSocket consumers and its output subscribers share channels-redis fairly.

channels-redis lets one ``receive()`` at a time read Redis for all of a process's
channels, and that reader reads only its own channel's prefix. A subscriber whose
channel had another prefix than the consumers' (``specific.``) waited for ever
while a WebSocket consumer of the same worker was reading: SSE and
``output_stream`` got nothing from WebSocket-signaled sessions.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
from django.test import override_settings

from django_rtcstream.client import StreamClient, SyntheticVideoTrack
from django_rtcstream.registry import get_stream
from django_rtcstream.testing import live_server
from tests.media import collect

REDIS_URL = os.environ.get("REDIS_URL")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.media]


@pytest.fixture
def redis_layer():
    if not REDIS_URL:
        if os.environ.get("CI"):
            raise RuntimeError("CI must set REDIS_URL")
        pytest.skip("REDIS_URL is not set")
    prefix = f"rtcstream-local-{uuid.uuid4().hex[:8]}"
    hosts = [{"address": REDIS_URL, "socket_timeout": None}]
    layers = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": hosts, "prefix": prefix},
        }
    }
    with override_settings(CHANNEL_LAYERS=layers):
        yield


@pytest.mark.parametrize("signaling", ["http", "websocket"])
async def test_outputs_reach_a_subscriber_of_the_same_worker_whatever_the_signaling(
    redis_layer, signaling
):
    from tests.asgi import application

    async with (
        live_server(application) as url,
        StreamClient(
            f"{url}/rtc/", "report", video=SyntheticVideoTrack(), signaling=signaling
        ) as client,
    ):
        await collect(client.video_frames, 3)
        outputs = []

        async def read():
            async for output in get_stream("report").output_stream(client.webrtc_id):
                outputs.append(output.args)
                if output.args == (20,):
                    return

        reader = asyncio.ensure_future(read())
        await asyncio.sleep(0.5)  # the subscription joins its group
        await client.set_input(level=10)
        await asyncio.sleep(0.3)  # a frame or more with level 10
        await client.set_input(level=20)
        await asyncio.wait_for(reader, 10)
    assert [o for o in outputs if o != (0,)] == [(10,), (20,)]
