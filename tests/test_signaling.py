"""Both signaling paths, trickled and early candidates, and bad input."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from django_rtcstream.client import (
    SignalingFailed,
    StreamClient,
    SyntheticVideoTrack,
    ToneAudioTrack,
    http_json,
)
from django_rtcstream.exceptions import SignalingError
from django_rtcstream.media.ice import parse_candidate
from django_rtcstream.models import StreamSession
from django_rtcstream.sessions.manager import manager
from tests.media import collect, rows_brightness

pytestmark = [pytest.mark.django_db(transaction=True)]

CHROME = (
    "candidate:842163049 1 udp 1677729535 127.0.0.1 50000 typ srflx raddr 0.0.0.0 "
    "rport 0 generation 0 ufrag sEMT network-cost 999"
)
FIREFOX = "candidate:0 1 UDP 2122252543 127.0.0.1 54321 typ host"


def test_parse_candidate_accepts_chrome_and_firefox_styles():
    chrome = parse_candidate({"candidate": CHROME, "sdpMid": "0", "sdpMLineIndex": 0})
    assert (chrome.ip, chrome.port, chrome.type, chrome.relatedAddress) == (
        "127.0.0.1",
        50000,
        "srflx",
        "0.0.0.0",
    )
    firefox = parse_candidate({"candidate": FIREFOX, "sdpMLineIndex": 0})
    assert (firefox.protocol.lower(), firefox.port, firefox.type) == ("udp", 54321, "host")
    assert parse_candidate({"candidate": "", "sdpMid": "0"}) is None  # end of candidates
    assert parse_candidate(None) is None


@pytest.mark.parametrize(
    "bad",
    [{"candidate": "candidate:1 1 udp"}, {"candidate": 5}, 7, {"candidate": "a b c d e f g h"}],
)
def test_parse_candidate_refuses_garbage(bad):
    with pytest.raises(SignalingError) as error:
        parse_candidate(bad)
    assert error.value.code == "invalid_candidate"


@pytest.mark.media
@pytest.mark.parametrize("signaling", ["http", "websocket"])
@pytest.mark.parametrize("trickle", [False, True])
async def test_both_signaling_paths_with_and_without_trickle(rtc_url, signaling, trickle):
    async with StreamClient(
        rtc_url, "flip", video=SyntheticVideoTrack(), signaling=signaling, trickle=trickle
    ) as client:
        frames = await collect(client.video_frames, 5)
        if signaling == "websocket":
            state = await client.next_message("connection")
            assert state == {"via": "websocket", "type": "connection", "data": "connected"}
    top, bottom = rows_brightness(frames[-1])
    assert bottom > 200 and top < 60


@pytest.mark.media
async def test_websocket_sends_server_candidates_then_end_of_candidates(asgi_server):
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    async with websockets.connect(
        f"ws://127.0.0.1:{asgi_server.rsplit(':', 1)[1]}/ws/rtc/video-receive/", origin=asgi_server
    ) as ws:
        await ws.send(json.dumps({"type": "offer", "sdp": pc.localDescription.sdp}))
        answer = json.loads(await ws.recv())
        assert answer["type"] == "answer" and answer["webrtc_id"]
        candidates = []
        while True:
            message = json.loads(await ws.recv())
            assert message["type"] == "ice-candidate"
            if message["candidate"] is None:
                break
            candidates.append(message["candidate"])
    await pc.close()
    assert candidates and all("127.0.0.1" in c["candidate"] for c in candidates)
    assert all(parse_candidate(c) is not None for c in candidates)


@pytest.mark.media
async def test_trickled_firefox_candidate_is_accepted_for_a_live_session(rtc_url):
    async with StreamClient(rtc_url, "flip", video=SyntheticVideoTrack()) as client:
        status, body = await http_json(
            client.url("webrtc/offer"),
            {
                "type": "ice-candidate",
                "webrtc_id": client.webrtc_id,
                "candidate": {"candidate": FIREFOX, "sdpMid": "0", "sdpMLineIndex": 0},
            },
        )
        assert (status, body) == (200, {"status": "success"})
        status, body = await http_json(
            client.url("webrtc/offer"),
            {
                "type": "ice-candidate",
                "webrtc_id": client.webrtc_id,
                "candidate": {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0},
            },
        )
        assert status == 200
        await collect(client.video_frames, 3)


@pytest.mark.media
async def test_a_candidate_sent_before_its_offer_is_kept(rtc_url):
    """The candidate request arrives first; the offer follows; the session gets it."""
    from aiortc import RTCPeerConnection, RTCSessionDescription

    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    # Move the client's candidates out of the SDP: they will only arrive trickled, early.
    lines = sdp.splitlines()
    cands = [ln[2:] for ln in lines if ln.startswith("a=candidate:")]
    stripped = (
        "\r\n".join(
            ln for ln in lines if not ln.startswith(("a=candidate:", "a=end-of-candidates"))
        )
        + "\r\n"
    )
    url = f"{rtc_url}video-receive/webrtc/offer"
    early = [
        asyncio.ensure_future(
            http_json(
                url,
                {
                    "type": "ice-candidate",
                    "webrtc_id": "early1",
                    "candidate": {"candidate": c, "sdpMid": "0", "sdpMLineIndex": 0},
                },
            )
        )
        for c in cands
    ]
    await asyncio.sleep(0.2)  # the candidates are waiting for their offer
    status, answer = await http_json(url, {"type": "offer", "sdp": stripped, "webrtc_id": "early1"})
    assert status == 200
    assert all(r == (200, {"status": "success"}) for r in await asyncio.gather(*early))
    connected = asyncio.Event()

    @pc.on("connectionstatechange")
    def changed():
        if pc.connectionState == "connected":
            connected.set()

    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    await asyncio.wait_for(connected.wait(), 10)
    session = manager().get("early1")
    transport = session.transport.pc.getTransceivers()[0].receiver.transport.transport
    remote_ports = {c.port for c in transport.getRemoteCandidates()}
    await pc.close()
    assert {int(c.split()[5]) for c in cands} <= remote_ports


async def test_metadata_lists_streams_with_inputs_limits_and_urls(rtc_url):
    status, body = await http_json(f"{rtc_url}streams/")
    assert status == 200
    by_name = {s["name"]: s for s in body["streams"]}
    assert {(s["modality"], s["mode"]) for s in by_name.values()} >= {
        (m, d)
        for m in ("video", "audio", "audio-video")
        for d in ("send-receive", "send", "receive")
    }
    gain = by_name["gain"]
    assert gain["inputs"] == [
        {
            "name": "level",
            "kind": "slider",
            "label": "Level",
            "default": 1.0,
            "minimum": 0,
            "maximum": 1,
            "step": 0.01,
            "type": "number",
        }
    ]
    assert by_name["limited"]["concurrency_limit"] == 1 and by_name["timed"]["time_limit"] == 1.5
    assert gain["urls"]["offer"] == f"{rtc_url}gain/webrtc/offer"
    assert gain["urls"]["websocket"].endswith("/ws/rtc/gain/")
    status, config = await http_json(f"{rtc_url}gain/config")
    assert status == 200 and config["rtc_configuration"] == {"iceServers": []}
    assert config["mode"] == "send-receive"


async def test_rtc_configuration_may_come_from_an_async_callable(rtc_url):
    from django_rtcstream.registry import get_stream

    stream = get_stream("flip")

    async def turn():
        return {"iceServers": [{"urls": "turn:127.0.0.1:3478", "username": "u", "credential": "p"}]}

    stream.rtc_configuration = turn
    try:
        _, config = await http_json(f"{rtc_url}flip/config")
    finally:
        stream.rtc_configuration = None
    assert config["rtc_configuration"]["iceServers"][0]["urls"] == "turn:127.0.0.1:3478"


BAD_REQUESTS = [
    ("flip", b"{not json", 400, "invalid_json"),
    ("flip", b"[1, 2]", 400, "invalid_json"),
    ("flip", json.dumps({"type": "offer"}).encode(), 400, "invalid_offer"),
    ("flip", json.dumps({"type": "offer", "sdp": "v=0 garbage"}).encode(), 400, "invalid_offer"),
    ("flip", json.dumps({"sdp": "v=0"}).encode(), 400, "invalid_request"),
    (
        "flip",
        json.dumps({"type": "offer", "sdp": "v=0", "webrtc_id": "../../x"}).encode(),
        400,
        "invalid_webrtc_id",
    ),
    ("nope", json.dumps({"type": "offer", "sdp": "v=0"}).encode(), 404, "unknown_stream"),
    (
        "flip",
        json.dumps(
            {
                "type": "ice-candidate",
                "webrtc_id": "nobody",
                "candidate": {"candidate": FIREFOX, "sdpMid": "0"},
            }
        ).encode(),
        404,
        "unknown_connection",
    ),
    (
        "flip",
        json.dumps(
            {"type": "ice-candidate", "webrtc_id": "nobody", "candidate": {"candidate": "rubbish"}}
        ).encode(),
        400,
        "invalid_candidate",
    ),
    (
        "flip",
        json.dumps({"type": "ice-candidate", "candidate": None}).encode(),
        400,
        "invalid_request",
    ),
    ("flip", b"x" * 300_000, 413, "request_too_large"),
]


@pytest.mark.media
async def test_bad_requests_get_precise_errors_and_disturb_no_one(asgi_server, rtc_url):
    import urllib.request

    async with StreamClient(rtc_url, "flip", video=SyntheticVideoTrack()) as bystander:
        for stream, body, status, code in BAD_REQUESTS:
            request = urllib.request.Request(
                f"{rtc_url}{stream}/webrtc/offer",
                data=body,
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            try:
                await asyncio.to_thread(urllib.request.urlopen, request)
                raise AssertionError(f"{code} was accepted")
            except urllib.error.HTTPError as exc:
                reply = json.loads(exc.read())
                assert (exc.code, reply["status"], reply["meta"]["error"]) == (
                    status,
                    "failed",
                    code,
                ), reply
                assert reply["meta"]["message"]
        # An audio offer to a video stream.
        with pytest.raises(SignalingFailed) as wrong_kind:
            await _offer_audio_to(rtc_url, "flip")
        assert wrong_kind.value.code == "unsupported_track"
        # The same id twice.
        with pytest.raises(SignalingFailed) as duplicate:
            await StreamClient(
                rtc_url, "flip", video=SyntheticVideoTrack(), webrtc_id=bystander.webrtc_id
            ).connect()
        assert (duplicate.value.status, duplicate.value.code) == (409, "connection_already_exists")
        # The bystander never noticed.
        await collect(bystander.video_frames, 10)
        assert list(manager().sessions) == [bystander.webrtc_id]
    assert (
        await StreamSession.objects.filter(state__in=["new", "connecting", "connected"]).acount()
        <= 1
    )


async def _offer_audio_to(rtc_url, stream):
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    pc.addTrack(ToneAudioTrack())
    await pc.setLocalDescription(await pc.createOffer())
    status, body = await http_json(
        f"{rtc_url}{stream}/webrtc/offer",
        {"type": "offer", "sdp": pc.localDescription.sdp, "webrtc_id": "wrongkind"},
    )
    await pc.close()
    if status != 200:
        raise SignalingFailed(status, body)


async def test_websocket_refuses_an_unknown_stream_with_4404(asgi_server):
    port = asgi_server.rsplit(":", 1)[1]
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/rtc/nope/", origin=asgi_server) as ws:
        message = json.loads(await ws.recv())
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert message["type"] == "failed" and message["meta"]["error"] == "unknown_stream"
    assert closed.value.rcvd.code == 4404


async def test_websocket_bad_messages_get_errors_and_the_socket_stays_usable(asgi_server):
    port = asgi_server.rsplit(":", 1)[1]
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/rtc/flip/", origin=asgi_server) as ws:
        for raw, code in [
            ("{bad", "invalid_json"),
            ('{"type": "dance"}', "invalid_request"),
            ('{"type": "offer", "sdp": "nonsense"}', "invalid_offer"),
            ('{"type": "ice-candidate", "candidate": null}', "unknown_connection"),
        ]:
            await ws.send(raw)
            reply = json.loads(await ws.recv())
            assert reply["type"] == "failed" and reply["meta"]["error"] == code, reply
        await ws.send('{"type": "ping", "data": 1}')
        assert json.loads(await ws.recv()) == {"type": "pong", "data": 1}
    assert not manager().sessions


async def test_websocket_from_a_foreign_origin_is_refused(asgi_server):
    port = asgi_server.rsplit(":", 1)[1]
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/ws/rtc/flip/", origin="http://evil.example"
        ):
            pass
    assert refused.value.response.status_code == 403


@pytest.mark.media
async def test_host_candidates_use_the_configured_address_and_port_range(rtc_url):
    from django.test import override_settings

    from django_rtcstream.media import ice
    from tests.settings import RTCSTREAM

    with override_settings(RTCSTREAM={**RTCSTREAM, "UDP_PORT_RANGE": (41000, 41010)}):
        ice.install_port_range((41000, 41010))
        try:
            async with StreamClient(rtc_url, "flip", video=SyntheticVideoTrack()) as client:
                await collect(client.video_frames, 3)
                session = manager().get(client.webrtc_id)
                transport = session.transport.pc.getTransceivers()[0].receiver.transport.transport
                local = transport.iceGatherer.getLocalCandidates()
        finally:
            ice.install_port_range(None)
    assert local and all(c.ip == "127.0.0.1" and 41000 <= c.port <= 41010 for c in local)


@pytest.mark.django_db(transaction=True)
async def test_the_media_stack_warms_up_once_after_the_first_http_request():
    """The first offer on a fresh worker must not pay for aiortc's imports (~0.2 s)."""
    from channels.testing import HttpCommunicator
    from django.core.asgi import get_asgi_application

    from django_rtcstream.asgi import rtcstream_application

    HOST = [(b"host", b"testserver")]
    application = rtcstream_application(get_asgi_application())
    http = application.application_mapping["http"]
    assert http.warming is None  # building the application imports nothing heavy
    first = HttpCommunicator(application, "GET", "/rtc/", headers=HOST)
    assert (await first.get_response())["status"] == 200
    await first.wait()
    warming = http.warming
    assert warming is not None
    await asyncio.wait_for(warming, 10)
    assert warming.exception() is None
    second = HttpCommunicator(application, "GET", "/rtc/", headers=HOST)
    await second.get_response()
    await second.wait()
    assert http.warming is warming  # once per worker


async def test_a_flood_of_candidates_for_unknown_sessions_is_bounded(rtc_url, monkeypatch):
    """Each waits for an offer that never comes: only a few may, the rest are refused at once,
    and a real session still connects and streams during the flood."""
    from collections import Counter

    from django_rtcstream.sessions import bus
    from tests.media import collect

    url = f"{rtc_url}flip/webrtc/offer"
    # http_json runs in the default executor (a few threads): fewer may wait than usual.
    monkeypatch.setattr(bus, "EARLY_PER_CLIENT", 2)

    async def ghost(i):
        return await http_json(
            url,
            {
                "type": "ice-candidate",
                "webrtc_id": f"ghost{i}",
                "candidate": {"candidate": FIREFOX, "sdpMid": "0"},
            },
        )

    flood = asyncio.ensure_future(asyncio.gather(*(ghost(i) for i in range(60))))
    async with StreamClient(rtc_url, "flip", video=SyntheticVideoTrack()) as client:
        await collect(client.video_frames, 5)
    results = await flood
    statuses = Counter(status for status, _ in results)
    assert set(statuses) == {404, 429} and statuses[429] > statuses[404], statuses
    assert {body["meta"]["error"] for status, body in results if status == 429} == {
        "too_many_early_candidates"
    }
    assert not bus._early_waiting and not bus._early_events and not bus._early_by_id  # nothing held
