"""SIGTERM drains a real server process, under uvicorn and under daphne.

For ``DRAIN_TIMEOUT`` seconds the worker keeps its sessions streaming and takes no
new ones (offers 503 ``draining`` with ``Retry-After``, WebSocket audio starts
closed with 4503, ``health/ready`` 503); its clients get a ``draining`` message; a
session that ends by itself meanwhile ends as it would; then the rest close as
``server_shutdown`` (``shutdown()`` runs, records closed) and the server exits.

Each server is a subprocess serving ``tests.asgi`` with its own SQLite file, as in
tests/test_shutdown.py (tests/server_process.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from django_rtcstream.client import SignalingFailed, StreamClient, ToneAudioTrack
from tests.server_process import serving

GRACE = 6.0  # DRAIN_TIMEOUT of the server under test

pytestmark = pytest.mark.media


def status_of(url, data=None):
    """(status, headers, JSON body) of a request, errors included."""
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


async def websocket_start_refusal(base):
    """A WebSocket audio start on a draining worker: (its failure body, close code)."""
    import websockets

    url = base.replace("http://", "ws://") + "echo/websocket/offer"
    async with websockets.connect(url) as socket:
        await socket.send(json.dumps({"event": "start", "websocket_id": "drain-probe"}))
        reply = json.loads(await asyncio.wait_for(socket.recv(), 5))
        with contextlib.suppress(websockets.ConnectionClosed):
            await asyncio.wait_for(socket.recv(), 5)
        return reply, socket.close_code


async def frames_for(client, seconds):
    """Audio frames that arrive within ``seconds``."""
    before = client.received["audio"]
    await asyncio.sleep(seconds)
    return client.received["audio"] - before


@pytest.mark.parametrize("server", ["uvicorn", "daphne"])
async def test_sigterm_drains_live_sessions_for_their_grace_then_closes_the_rest(server, tmp_path):
    async with serving(server, tmp_path, RTCSTREAM_TEST_DRAIN_TIMEOUT=str(GRACE)) as running:
        base, process, clients = running.base, running.process, running.clients
        # Both stay on this worker (no reconnect): one for the whole grace, one hangs up.
        for signaling in ("http", "websocket"):
            client = StreamClient(
                base,
                "echo",
                audio=ToneAudioTrack(),
                signaling=signaling,
                ice_host_addresses=["127.0.0.1"],
                reconnect_on_drain=False,
            )
            clients.append(client)
            await asyncio.wait_for(client.connect(), 20)
        stays, leaves = clients
        for client in clients:
            assert await frames_for(client, 0.5) > 0

        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        for client in clients:
            drained = await client.next_message("draining", timeout=5)
            assert drained["data"]["reconnect"] is True  # echo allows it; these clients don't
            assert 0 < drained["data"]["seconds"] <= GRACE

        # Not admitting: offers, WebSocket audio starts and readiness say so.
        status, headers, body = await asyncio.to_thread(
            status_of, f"{base}echo/webrtc/offer", {"type": "offer", "sdp": "v=0\r\n"}
        )
        assert (status, body["meta"]["error"]) == (503, "draining"), body
        assert int(headers["Retry-After"]) >= 1
        with pytest.raises(SignalingFailed) as refused:
            await StreamClient(base, "echo", audio=ToneAudioTrack()).connect()
        assert (refused.value.status, refused.value.code) == (503, "draining")
        reply, code = await websocket_start_refusal(base)
        assert (reply["meta"]["error"], code) == ("draining", 4503), reply
        status, _, body = await asyncio.to_thread(status_of, f"{base}health/ready")
        assert status == 503 and body["checks"]["draining"] is True, body

        # Live sessions keep streaming during the grace.
        assert await frames_for(stays, 1.0) > 20
        await leaves.close()  # ends by itself meanwhile: as a hang-up, not a shutdown
        assert process.poll() is None, "the server stopped before the grace was over"
        assert await frames_for(stays, 0.5) > 5

        try:
            await asyncio.to_thread(process.wait, GRACE + 15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{server} did not exit after its drain:\n{running.log_tail()}")
        took = time.monotonic() - signalled
        rows = dict(
            running.records(
                "SELECT webrtc_id, state || ' ' || close_reason FROM django_rtcstream_streamsession"
            )
        )
        shutdowns = running.shutdowns()
        report = f"{server} exited {took:.1f} s after SIGTERM; {rows}\n{running.log_tail()}"
        assert took >= GRACE - 1.0, report  # the staying session held the worker up
        assert rows == {
            stays.webrtc_id: "closed server_shutdown",
            leaves.webrtc_id: "closed client_disconnected",
        }, report
        assert shutdowns == sorted(c.webrtc_id for c in clients), report
