"""Two worker processes behind one database and one channel layer.

Real uvicorn processes serve the test project on PostgreSQL and Redis
(REDIS_URL, DATABASE_URL). A peer connection lives in one worker; inputs,
outputs, candidates, hang-ups and limits work through the other, and a
worker killed with SIGKILL leaves sessions that the survivor reaps.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
import time
import urllib.request
import uuid

import pytest

from django_rtcstream.client import (
    SignalingFailed,
    StreamClient,
    SyntheticVideoTrack,
    ToneAudioTrack,
    http_json,
)
from tests.media import collect, drain, mean_brightness
from tests.workers import fresh_database, rows as database_rows, start_worker, stop_worker

REDIS_URL = os.environ.get("REDIS_URL")
DATABASE_URL = os.environ.get("DATABASE_URL")

if not (REDIS_URL and DATABASE_URL):
    if os.environ.get("CI"):
        raise RuntimeError("CI must set REDIS_URL and DATABASE_URL for the multi-worker tests")
    pytest.skip("REDIS_URL and DATABASE_URL are not set", allow_module_level=True)

pytestmark = [pytest.mark.media]


@pytest.fixture(scope="module")
def cluster():
    """A fresh PostgreSQL database, migrated, and two workers on it."""
    signals = os.path.join(
        tempfile.gettempdir(), f"rtcstream_mw_{uuid.uuid4().hex[:8]}-signals.jsonl"
    )
    with fresh_database("rtcstream_mw", RTCSTREAM_TEST_SIGNALS=signals) as (name, env):
        cluster = {"name": name, "env": env, "workers": {}}
        try:
            for worker in ("A", "B"):
                spawn_worker(cluster, worker)
            yield cluster
        finally:
            for _, process in cluster["workers"].values():
                stop_worker(process)
            if os.path.exists(signals):
                os.remove(signals)


def spawn_worker(cluster, worker):
    """Start one uvicorn worker process on the cluster's database and channel layer."""
    url, process = start_worker(cluster["env"], worker)
    cluster["workers"][worker] = (url, process)
    return url


def rows(cluster, sql, *params):
    return database_rows(cluster["name"], sql, *params)


def base(cluster, worker):
    return cluster["workers"][worker][0] + "/rtc/"


async def wait_for(predicate, timeout=10.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


async def test_inputs_outputs_and_hangup_reach_the_owning_worker_through_the_other(cluster):
    a, b = base(cluster, "A"), base(cluster, "B")
    async with StreamClient(
        a, "gain", video=SyntheticVideoTrack(marker_rows=240), ice_host_addresses=["127.0.0.1"]
    ) as client:
        await collect(client.video_frames, 3)
        [(worker, state)] = rows(
            cluster,
            "SELECT worker, state FROM django_rtcstream_streamsession WHERE webrtc_id = %s",
            client.webrtc_id,
        )
        assert (worker, state) == ("A", "connected")
        # The input hook on worker B changes the handler on worker A.
        status, reply = await http_json(
            f"{b}gain/input", {"webrtc_id": client.webrtc_id, "token": client.token, "level": 0.25}
        )
        assert status == 200, reply
        await asyncio.sleep(0.5)
        await drain(client.video_frames)
        assert abs(mean_brightness((await collect(client.video_frames, 3))[-1]) - 59) < 15
        assert rows(
            cluster,
            "SELECT inputs FROM django_rtcstream_streamsession WHERE webrtc_id = %s",
            client.webrtc_id,
        )[0][0] == [0.25]
        # A hang-up through B closes the session on A.
        status, _ = await http_json(
            f"{b}gain/webrtc/offer",
            {"type": "close", "token": client.token, "webrtc_id": client.webrtc_id},
        )
        assert status == 200
        closed = await wait_for(
            lambda: rows(
                cluster,
                "SELECT state, close_reason FROM django_rtcstream_streamsession "
                "WHERE webrtc_id = %s AND state = 'closed'",
                client.webrtc_id,
            )
        )
    assert closed == [("closed", "client_hangup")]


def signals_of(cluster, webrtc_id):
    try:
        with open(cluster["env"]["RTCSTREAM_TEST_SIGNALS"]) as lines:
            return [e for e in map(json.loads, lines) if e["webrtc_id"] == webrtc_id]
    except FileNotFoundError:
        return []


async def test_signals_are_sent_on_the_owning_worker_with_their_arguments(cluster):
    a, b = base(cluster, "A"), base(cluster, "B")
    async with StreamClient(
        a, "gain", video=SyntheticVideoTrack(), ice_host_addresses=["127.0.0.1"]
    ) as client:
        await collect(client.video_frames, 3)
        # Set through worker B; the session, and so the signal, is worker A's.
        status, reply = await http_json(
            f"{b}gain/input", {"webrtc_id": client.webrtc_id, "token": client.token, "level": 0.5}
        )
        assert status == 200, reply
        await wait_for(
            lambda: any(
                e["signal"] == "inputs_changed" for e in signals_of(cluster, client.webrtc_id)
            )
        )
        webrtc_id = client.webrtc_id
    events = await wait_for(
        lambda: (lambda es: es if any(e["signal"] == "session_ended" for e in es) else None)(
            signals_of(cluster, webrtc_id)
        )
    )
    assert [(e["signal"], e["worker"]) for e in events] == [
        ("session_started", "A"),
        ("inputs_changed", "A"),
        ("session_ended", "A"),
    ]
    started, changed, ended = events
    assert (started["stream"], started["channel"]) == ("gain", "webrtc")
    assert (changed["inputs"], changed["previous"]) == ([0.5], [1.0])
    assert (ended["reason"], ended["state"]) == ("client_hangup", "closed")
    assert ended["counters"]["frames_in"] > 0
    assert started["record_id"] == changed["record_id"] == ended["record_id"]


async def test_sse_on_one_worker_streams_outputs_of_a_session_on_the_other(cluster):
    a, b = base(cluster, "A"), base(cluster, "B")
    async with StreamClient(
        a, "video-send", video=SyntheticVideoTrack(), ice_host_addresses=["127.0.0.1"]
    ) as client:
        url = f"{b}video-send/outputs?webrtc_id={client.webrtc_id}&token={client.token}"

        def read(n):
            events = []
            with urllib.request.urlopen(url, timeout=15) as response:
                for raw in response:
                    line = raw.decode().strip()
                    if line.startswith("data: "):
                        events.append(json.loads(line[6:]))
                    if len(events) == n:
                        return events
            return events

        first, second = await asyncio.gather(asyncio.to_thread(read, 3), asyncio.to_thread(read, 3))
    assert len(first) == 3 and all(e[0] % 5 == 0 for e in first)
    assert len(second) == 3


async def test_early_candidates_sent_to_the_other_worker_are_delivered(cluster):
    from aiortc import RTCPeerConnection, RTCSessionDescription

    from django_rtcstream.media import ice

    ice.install_host_addresses(["127.0.0.1"])
    pc = RTCPeerConnection(ice.rtc_configuration([]))
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    lines = pc.localDescription.sdp.splitlines()
    cands = [ln[2:] for ln in lines if ln.startswith("a=candidate:")]
    stripped = (
        "\r\n".join(
            ln for ln in lines if not ln.startswith(("a=candidate:", "a=end-of-candidates"))
        )
        + "\r\n"
    )
    webrtc_id = f"mw{uuid.uuid4().hex[:10]}"
    early = [
        asyncio.ensure_future(
            http_json(
                f"{base(cluster, 'B')}video-receive/webrtc/offer",
                {
                    "type": "ice-candidate",
                    "webrtc_id": webrtc_id,
                    "candidate": {"candidate": c, "sdpMid": "0", "sdpMLineIndex": 0},
                },
            )
        )
        for c in cands
    ]
    await asyncio.sleep(0.2)
    status, answer = await http_json(
        f"{base(cluster, 'A')}video-receive/webrtc/offer",
        {"type": "offer", "sdp": stripped, "webrtc_id": webrtc_id},
    )
    assert status == 200
    assert all(r == (200, {"status": "success"}) for r in await asyncio.gather(*early))
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    connected = asyncio.Event()
    pc.on("connectionstatechange", lambda: pc.connectionState == "connected" and connected.set())
    await asyncio.wait_for(connected.wait(), 10)
    await pc.close()


async def test_concurrency_limit_holds_across_workers_under_concurrent_offers(cluster):
    from aiortc import RTCPeerConnection

    from django_rtcstream.media import ice

    ice.install_host_addresses(["127.0.0.1"])
    pcs, bodies = [], []
    for i in range(8):
        pc = RTCPeerConnection(ice.rtc_configuration([]))
        pc.addTrack(ToneAudioTrack())
        await pc.setLocalDescription(await pc.createOffer())
        pcs.append(pc)
        bodies.append(
            {
                "type": "offer",
                "sdp": pc.localDescription.sdp,
                "webrtc_id": f"race{i}{uuid.uuid4().hex[:6]}",
            }
        )
    results = await asyncio.gather(
        *(
            http_json(f"{base(cluster, 'AB'[i % 2])}limited/webrtc/offer", body)
            for i, body in enumerate(bodies)
        )
    )
    statuses = sorted(status for status, _ in results)
    for pc in pcs:
        await pc.close()
    assert statuses == [200] + [429] * 7, results
    assert all(
        r["meta"]
        == {"error": "concurrency_limit_reached", "limit": 1, "message": r["meta"]["message"]}
        for s, r in results
        if s == 429
    )
    # The admitted session never connects here: it is closed by the connect timeout.
    await wait_for(
        lambda: (
            not rows(
                cluster,
                "SELECT 1 FROM django_rtcstream_streamsession WHERE "
                "stream = 'limited' AND state IN ('new','connecting','connected')",
            )
        ),
        timeout=20,
    )


async def test_a_killed_worker_is_reaped_and_its_slot_freed(cluster):
    await asyncio.to_thread(spawn_worker, cluster, "C")
    a, b = base(cluster, "C"), base(cluster, "B")
    client = StreamClient(a, "limited", audio=ToneAudioTrack(), ice_host_addresses=["127.0.0.1"])
    await client.connect()
    url = f"{b}limited/outputs?webrtc_id={client.webrtc_id}&token={client.token}"

    def sse_until_end():
        with urllib.request.urlopen(url, timeout=30) as response:
            return [raw.decode().strip() for raw in response if raw.strip()]

    sse = asyncio.ensure_future(asyncio.to_thread(sse_until_end))
    await asyncio.sleep(0.3)
    with pytest.raises(SignalingFailed) as full:
        await StreamClient(
            b, "limited", audio=ToneAudioTrack(), ice_host_addresses=["127.0.0.1"]
        ).connect()
    assert full.value.code == "concurrency_limit_reached"
    cluster["workers"]["C"][1].send_signal(signal.SIGKILL)
    started = time.monotonic()
    reaped = await wait_for(
        lambda: rows(
            cluster,
            "SELECT state, close_reason FROM django_rtcstream_streamsession "
            "WHERE webrtc_id = %s AND state = 'failed'",
            client.webrtc_id,
        ),
        timeout=10,
    )
    assert reaped == [("failed", "worker_lost")]
    assert time.monotonic() - started < 2.0 + 0.5 + 2.0  # lease + heartbeat + slack
    lines = await asyncio.wait_for(sse, 10)
    assert lines[-2:] == ["event: end", f'data: {{"webrtc_id": "{client.webrtc_id}"}}']
    await client.close()
    async with StreamClient(
        b, "limited", audio=ToneAudioTrack(), ice_host_addresses=["127.0.0.1"]
    ) as again:
        await collect(again.audio_frames, 3)


async def test_a_session_outlives_the_redis_socket_timeout(cluster):
    """redis-py 8 cuts 5 s blocking reads; the session's control loop must survive it."""
    a, b = base(cluster, "A"), base(cluster, "B")
    async with StreamClient(
        a, "gain", video=SyntheticVideoTrack(marker_rows=240), ice_host_addresses=["127.0.0.1"]
    ) as client:
        await collect(client.video_frames, 3)
        await asyncio.sleep(11)  # two timed-out reads on worker A's control channel
        status, reply = await http_json(
            f"{b}gain/input", {"webrtc_id": client.webrtc_id, "token": client.token, "level": 0.25}
        )
        assert status == 200, reply
        await asyncio.sleep(0.5)
        await drain(client.video_frames)
        assert abs(mean_brightness((await collect(client.video_frames, 3))[-1]) - 59) < 15
        [(state,)] = rows(
            cluster,
            "SELECT state FROM django_rtcstream_streamsession WHERE webrtc_id = %s",
            client.webrtc_id,
        )
        assert state == "connected"
