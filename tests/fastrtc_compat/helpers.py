"""Waiting on what the server does, with bounded timeouts (never fixed sleeps)."""

from __future__ import annotations

import asyncio
import json
import urllib.request

from django_rtcstream.models import StreamSession
from django_rtcstream.registry import get_stream


async def record(webrtc_id):
    return await StreamSession.objects.filter(webrtc_id=webrtc_id).order_by("-created_at").afirst()


async def wait_closed(webrtc_id, timeout=10.0):
    """The session's record once it is no longer live."""

    async def poll():
        while True:
            r = await record(webrtc_id)
            if r is not None and not r.is_live:
                return r
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(poll(), timeout)


async def wait_until(predicate, timeout=10.0, what="condition"):
    async def poll():
        while not predicate():  # noqa: ASYNC110  (any predicate; bounded by wait_for)
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


async def outputs_of(stream_name, webrtc_id, n, timeout=10.0, accept=lambda o: True):
    """The first ``n`` AdditionalOutputs (matching ``accept``) from ``stream.output_stream``."""
    out = []

    async def take():
        async for output in get_stream(stream_name).output_stream(webrtc_id):
            if accept(output):
                out.append(output)
            if len(out) >= n:
                return

    await asyncio.wait_for(take(), timeout)
    return out


async def sse_events(client, n, timeout=10.0):
    """The first ``n`` ``data:`` payloads of the SSE output hook, as JSON."""
    url = f"{client.url('outputs')}?webrtc_id={client.webrtc_id}&token={client.token}"

    def read():
        events = []
        with urllib.request.urlopen(url, timeout=timeout) as response:
            assert response.headers["Content-Type"] == "text/event-stream"
            for raw in response:
                line = raw.decode().rstrip("\n")
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if len(events) >= n:
                        return events
        return events

    return await asyncio.wait_for(asyncio.to_thread(read), timeout + 1)


async def messages_until(client, kind, timeout=10.0):
    """Every message the client got up to and including the first of type ``kind``."""
    seen = []

    async def wait():
        while True:
            message = await client.messages.get()
            seen.append(message)
            if message.get("type") == kind:
                return seen

    return await asyncio.wait_for(wait(), timeout)
