"""Limits and lifecycle: slots are freed, sessions end on time, shutdown() always runs."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCPeerConnection
from django.test import override_settings

from django_rtcstream.client import (
    SignalingFailed,
    StreamClient,
    SyntheticVideoTrack,
    ToneAudioTrack,
    http_json,
)
from django_rtcstream.models import StreamSession
from django_rtcstream.sessions.manager import manager
from tests import streams
from tests.media import collect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.media]


async def record(webrtc_id):
    return await StreamSession.objects.filter(webrtc_id=webrtc_id).order_by("-created_at").afirst()


async def wait_closed(webrtc_id, timeout=10.0):
    async def poll():
        while True:
            r = await record(webrtc_id)
            if r is not None and not r.is_live:
                return r
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(poll(), timeout)


def events_of(webrtc_id):
    return [e for i, e in streams.EVENTS if i == webrtc_id]


async def test_concurrency_limit_is_reached_then_freed_when_a_session_ends(rtc_url):
    first = StreamClient(rtc_url, "limited", audio=ToneAudioTrack())
    await first.connect()
    with pytest.raises(SignalingFailed) as refused:
        await StreamClient(rtc_url, "limited", audio=ToneAudioTrack()).connect()
    assert refused.value.status == 429
    assert refused.value.body["status"] == "failed"
    assert refused.value.body["meta"]["error"] == "concurrency_limit_reached"
    assert refused.value.body["meta"]["limit"] == 1
    await first.close()
    closed = await wait_closed(first.webrtc_id)
    assert events_of(first.webrtc_id) == ["start_up", "shutdown"]
    assert closed.state == "closed"
    async with StreamClient(rtc_url, "limited", audio=ToneAudioTrack()) as again:
        await collect(again.audio_frames, 5)


async def test_hangup_over_http_closes_at_once(rtc_url):
    client = StreamClient(rtc_url, "limited", audio=ToneAudioTrack())
    await client.connect()
    status, body = await http_json(
        client.url("webrtc/offer"),
        {"type": "close", "webrtc_id": client.webrtc_id, "token": client.token},
    )
    assert (status, body) == (200, {"status": "success"})
    closed = await wait_closed(client.webrtc_id, timeout=2)
    assert closed.close_reason == "client_hangup"
    assert "shutdown" in events_of(client.webrtc_id)
    await client.close()


async def test_a_malformed_offer_never_holds_a_slot(rtc_url):
    url = f"{rtc_url}limited/webrtc/offer"
    for sdp in [
        "v=0",
        "garbage",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
    ]:
        status, body = await http_json(url, {"type": "offer", "sdp": sdp, "webrtc_id": "bad1"})
        assert status == 400 and body["meta"]["error"] == "invalid_offer", body
    assert not manager().sessions
    async with StreamClient(rtc_url, "limited", audio=ToneAudioTrack()) as client:
        await collect(client.audio_frames, 3)


async def test_time_limit_closes_the_session(rtc_url):
    async with StreamClient(rtc_url, "timed", audio=ToneAudioTrack()) as client:
        message = await client.next_message("end_stream", timeout=5)
        assert message["data"] == "time_limit"
        closed = await wait_closed(client.webrtc_id)
    assert closed.close_reason == "time_limit" and closed.connected_at is not None
    assert events_of(client.webrtc_id) == ["start_up", "shutdown"]


async def test_a_session_that_never_connects_is_closed_and_frees_its_slot(rtc_url):
    from tests.settings import RTCSTREAM

    with override_settings(RTCSTREAM={**RTCSTREAM, "CONNECT_TIMEOUT": 1.0}):
        pc = RTCPeerConnection()
        pc.addTransceiver("audio", direction="sendrecv")
        pc.createDataChannel("text")
        await pc.setLocalDescription(await pc.createOffer())
        # Offer, but never apply the answer: ICE can never complete.
        status, _ = await http_json(
            f"{rtc_url}limited/webrtc/offer",
            {"type": "offer", "sdp": pc.localDescription.sdp, "webrtc_id": "ghost"},
        )
        assert status == 200
        closed = await wait_closed("ghost", timeout=5)
        await pc.close()
    assert (closed.state, closed.close_reason) == ("failed", "connect_timeout")
    assert events_of("ghost")[-1] == "shutdown"
    async with StreamClient(rtc_url, "limited", audio=ToneAudioTrack()) as client:
        await collect(client.audio_frames, 3)


async def test_a_handler_error_is_reported_logged_and_closes_the_session(rtc_url, caplog):
    async with StreamClient(rtc_url, "faulty", video=SyntheticVideoTrack()) as client:
        message = await client.next_message("error", timeout=10)
        closed = await wait_closed(client.webrtc_id)
    assert "Boom: the handler failed on purpose" in message["data"]
    assert closed.state == "failed" and closed.close_reason.startswith("handler_error")
    assert any(client.webrtc_id in r.getMessage() for r in caplog.records)


async def test_a_sync_receive_error_is_reported_and_closes_the_session(rtc_url):
    """Sync ``receive`` runs in the pool without a loop round trip per frame; its error still lands."""
    async with StreamClient(rtc_url, "faulty_audio", audio=ToneAudioTrack()) as client:
        message = await client.next_message("error", timeout=10)
        closed = await wait_closed(client.webrtc_id)
    assert "Boom: receive failed on purpose" in message["data"]
    assert closed.state == "failed" and closed.close_reason.startswith("handler_error")
    assert events_of(client.webrtc_id) == ["start_up", "shutdown"]
    assert streams.SEEN[client.webrtc_id] == 6  # nothing was handed to receive() after it failed


async def test_server_shutdown_runs_shutdown_for_every_session(rtc_url):
    client = StreamClient(rtc_url, "echo", audio=ToneAudioTrack())
    await client.connect()
    await manager().close_all()
    closed = await wait_closed(client.webrtc_id)
    await client.close()
    assert closed.close_reason == "server_shutdown"
    assert events_of(client.webrtc_id) == ["start_up", "shutdown"]


async def test_records_count_frames_and_keep_inputs(rtc_url):
    from django_rtcstream.registry import get_stream

    async with StreamClient(rtc_url, "echo", audio=ToneAudioTrack()) as client:
        await collect(client.audio_frames, 25)
        await get_stream("echo").aset_input(client.webrtc_id, 0.5)
        await asyncio.sleep(0.2)
        live = await record(client.webrtc_id)
        assert live.state == "connected" and live.inputs == [0.5]
    closed = await wait_closed(client.webrtc_id)
    assert closed.frames_in > 10 and closed.frames_out > 10 and closed.closed_at


async def test_concurrent_offers_on_sqlite_are_all_admitted(rtc_url):
    """Each request has its own ORM thread: admissions must not deadlock SQLite."""
    from aiortc import RTCPeerConnection

    pcs, bodies = [], []
    for i in range(8):
        pc = RTCPeerConnection()
        pc.addTrack(ToneAudioTrack())
        await pc.setLocalDescription(await pc.createOffer())
        pcs.append(pc)
        bodies.append({"type": "offer", "sdp": pc.localDescription.sdp, "webrtc_id": f"race{i}"})
    try:
        for _ in range(3):  # a few rounds: the race is timing-dependent
            results = await asyncio.gather(
                *(http_json(f"{rtc_url}echo/webrtc/offer", b) for b in bodies)
            )
            assert [s for s, _ in results] == [200] * 8, results
            await asyncio.gather(
                *(
                    http_json(
                        f"{rtc_url}echo/webrtc/offer",
                        {"type": "close", "webrtc_id": b["webrtc_id"], "token": r["token"]},
                    )
                    for b, (_, r) in zip(bodies, results, strict=True)
                )
            )
            for b in bodies:
                await wait_closed(b["webrtc_id"])
    finally:
        for pc in pcs:
            await pc.close()


async def test_a_worker_never_reaps_its_own_live_sessions(rtc_url):
    """A starved heartbeat (its lease looks expired) must not make the worker that holds
    the session reap it when an admission at the limit looks for dead workers' slots."""
    from datetime import timedelta

    from django.utils import timezone

    async with StreamClient(rtc_url, "limited", audio=ToneAudioTrack()) as first:
        await collect(first.audio_frames, 3)
        stale = timezone.now() - timedelta(hours=1)
        await StreamSession.objects.filter(webrtc_id=first.webrtc_id).aupdate(heartbeat_at=stale)
        with pytest.raises(SignalingFailed) as refused:
            await StreamClient(rtc_url, "limited", audio=ToneAudioTrack()).connect()
        assert refused.value.status == 429
        mine = await record(first.webrtc_id)
        assert (mine.state, mine.close_reason) == ("connected", "")
        await collect(first.audio_frames, 3)  # and it still streams
