"""Security (issue 13): sessions belong to someone, over every route, on the real server.

A second client (no token, another session's token or ticket, another logged-in user,
anonymous) can neither read a session's outputs, set its inputs, close it nor inspect
it, over HTTP or WebSocket signaling; the sessions API is staff only; a foreign Origin
is refused on every browser WebSocket route and Twilio's routes are guarded by its
signature instead; session-cookie requests need the CSRF token; tokens are stored
hashed and compared in constant time; no failure body leaks a traceback.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import urllib.parse
import uuid

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.test import override_settings

from django_rtcstream.client import StreamClient, SyntheticVideoTrack, ToneAudioTrack
from django_rtcstream.models import StreamSession
from django_rtcstream.sessions.manager import manager
from django_rtcstream.telephone.twilio import signature
from tests import rawhttp
from tests.media import collect, drain
from tests.settings import RTCSTREAM

pytestmark = [pytest.mark.django_db(transaction=True)]

TWILIO_TOKEN = "twilio-security-token"


@pytest.fixture
def no_server_errors(caplog):
    """Fail the test if anything logged an error or a traceback while it ran."""
    caplog.set_level(logging.INFO)
    yield caplog
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]


# -- helpers ---------------------------------------------------------------------------


def _login(username: str, staff: bool = False) -> tuple[int, str]:
    from django.contrib.auth.models import User
    from django.test import Client

    user = User.objects.create_user(username, password="pw", is_staff=staff)
    client = Client()
    assert client.login(username=username, password="pw")
    return user.pk, client.cookies["sessionid"].value


async def login(username: str, staff: bool = False) -> tuple[int, str]:
    """A user and the ``sessionid`` cookie value of a logged-in Django session."""
    return await sync_to_async(_login)(username, staff)


def with_csrf(base: str, sessionid: str | None = None, **extra: str) -> dict[str, str]:
    """Headers of a same-site browser request: session cookie, CSRF cookie and token."""
    from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret

    secret = _get_new_csrf_string()
    cookie = f"csrftoken={secret}" + (f"; sessionid={sessionid}" if sessionid else "")
    return {
        "Cookie": cookie,
        "X-CSRFToken": _mask_cipher_secret(secret),
        "Origin": base,
        "Referer": base + "/",
        **extra,
    }


def cookie_only(sessionid: str) -> dict[str, str]:
    return {"Cookie": f"sessionid={sessionid}"}


class Peer:
    """A real aiortc client of the ``gain`` stream that signals with headers of its own
    (a logged-in browser's cookies), which ``StreamClient`` cannot send."""

    def __init__(self, rtc_url: str, stream: str = "gain") -> None:
        self.rtc_url, self.stream = rtc_url, stream
        self.frames = 0

    async def open(self, headers: dict[str, str]) -> Peer:
        from aiortc import RTCPeerConnection, RTCSessionDescription

        self.pc = pc = RTCPeerConnection()
        connected = asyncio.Event()

        @pc.on("connectionstatechange")
        def _state() -> None:
            if pc.connectionState == "connected":
                connected.set()

        @pc.on("track")
        def _track(track) -> None:
            async def read() -> None:
                while True:
                    await track.recv()
                    self.frames += 1

            self.reader = asyncio.ensure_future(read())

        pc.createDataChannel("text")
        pc.addTrack(SyntheticVideoTrack())
        await pc.setLocalDescription(await pc.createOffer())
        reply = await rawhttp.request(
            f"{self.rtc_url}{self.stream}/webrtc/offer",
            "POST",
            {"sdp": pc.localDescription.sdp, "type": "offer"},
            headers,
        )
        assert reply.status == 200, reply.text
        answer = reply.json()
        self.webrtc_id, self.token = answer["webrtc_id"], answer["token"]
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        await asyncio.wait_for(connected.wait(), 10)

        async def recorded():
            record = await live_record(self.webrtc_id)
            return record is not None and record.state == "connected"

        await wait_for(recorded, 10, "the session's record to say connected")
        return self

    async def close(self) -> None:
        if getattr(self, "reader", None) is not None:
            self.reader.cancel()
        await self.pc.close()


async def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    async def poll():
        while True:
            value = await predicate()
            if value:
                return value
            await asyncio.sleep(0.05)

    try:
        return await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def live_record(webrtc_id: str) -> StreamSession:
    return await StreamSession.objects.filter(webrtc_id=webrtc_id).order_by("-created_at").afirst()


def ws_url(base: str, path: str) -> str:
    return "ws://" + base.split("://", 1)[1] + path


# -- 1. strangers over HTTP -----------------------------------------------------------


@pytest.mark.media
async def test_strangers_cannot_set_inputs_read_outputs_or_close_a_session_over_http(
    rtc_url, asgi_server, no_server_errors
):
    alice_id, alice = await login("alice")
    _, bob = await login("bob")
    victim = await Peer(rtc_url).open(cookie_only(alice))
    try:
        record = await live_record(victim.webrtc_id)
        assert record.user_id == alice_id and record.state == "connected"
        async with StreamClient(rtc_url, "gain", video=SyntheticVideoTrack()) as other:
            ticket = await rawhttp.request(
                f"{rtc_url}gain/outputs/ticket",
                "POST",
                {"webrtc_id": other.webrtc_id, "token": other.token},
            )
            assert ticket.status == 200
            other_ticket = ticket.json()["ticket"]
            intruders = {
                "anonymous": ({}, None),
                "forged token": ({}, "A" * 43),
                "another session's token": ({}, other.token),
                "another user": (with_csrf(asgi_server, bob), None),
                "another user with another session's token": (
                    with_csrf(asgi_server, bob),
                    other.token,
                ),
            }
            refused = []
            for who, (headers, token) in intruders.items():
                body = {"webrtc_id": victim.webrtc_id, **({"token": token} if token else {})}
                in_header = {**headers, "X-Session-Token": token} if token else headers
                query = f"webrtc_id={victim.webrtc_id}" + (f"&token={token}" if token else "")
                attempts = {
                    "input": await rawhttp.request(
                        f"{rtc_url}gain/input", "POST", {**body, "level": 0.1}, headers
                    ),
                    "input, token header": await rawhttp.request(
                        f"{rtc_url}gain/input",
                        "POST",
                        {"webrtc_id": victim.webrtc_id, "level": 0.1},
                        in_header,
                    ),
                    "positional input": await rawhttp.request(
                        f"{rtc_url}gain/input", "POST", {**body, "args": [0.1]}, headers
                    ),
                    "outputs": await rawhttp.open_sse(f"{rtc_url}gain/outputs?{query}", headers),
                    "outputs, token header": await rawhttp.open_sse(
                        f"{rtc_url}gain/outputs?webrtc_id={victim.webrtc_id}", in_header
                    ),
                    "ticket": await rawhttp.request(
                        f"{rtc_url}gain/outputs/ticket", "POST", body, headers
                    ),
                    "close": await rawhttp.request(
                        f"{rtc_url}gain/webrtc/offer", "POST", {"type": "close", **body}, headers
                    ),
                }
                for action, reply in attempts.items():
                    if isinstance(reply, rawhttp.SSE):
                        reply.close()
                        refused.append((who, action, "opened the output stream"))
                    elif (reply.status, reply.json()["meta"]["error"]) != (
                        403,
                        "permission_denied",
                    ):
                        refused.append((who, action, reply.status, reply.text[:200]))
            # Another session's ticket opens nothing but that session, once.
            reply = await rawhttp.open_sse(
                f"{rtc_url}gain/outputs?webrtc_id={victim.webrtc_id}&ticket={other_ticket}"
            )
            assert isinstance(reply, rawhttp.Response) and reply.status == 403, reply
            assert not refused, refused
            # None of it reached the session: still connected, inputs untouched, media flowing.
            session = manager().sessions[victim.webrtc_id]
            assert session.inputs == [1.0]
            assert (await live_record(victim.webrtc_id)).state == "connected"
            frames = victim.frames
            await wait_for(lambda: _true(victim.frames > frames + 5), 5, "frames after refusals")
        # Its owners may: the token holder, and the logged-in user who opened it.
        reply = await rawhttp.request(
            f"{rtc_url}gain/input",
            "POST",
            {"webrtc_id": victim.webrtc_id, "level": 0.25},
            {"X-Session-Token": victim.token},
        )
        assert (reply.status, reply.json()["inputs"]) == (200, {"level": 0.25})
        reply = await rawhttp.request(
            f"{rtc_url}gain/input",
            "POST",
            {"webrtc_id": victim.webrtc_id, "level": 0.5},
            with_csrf(asgi_server, alice),
        )
        assert (reply.status, reply.json()["inputs"]) == (200, {"level": 0.5}), reply.text
        reply = await rawhttp.request(
            f"{rtc_url}gain/outputs/ticket",
            "POST",
            {"webrtc_id": victim.webrtc_id},
            cookie_only(alice),
        )
        assert reply.status == 200, reply.text
    finally:
        await victim.close()


async def _true(value):
    return value


# -- 2. strangers over WebSockets -----------------------------------------------------


@pytest.mark.media
async def test_websocket_signaling_cannot_reach_another_session(
    rtc_url, asgi_server, no_server_errors
):
    """A signaling socket acts only on the session it opened: an offer with a live id
    is refused, a candidate or a close naming another session does nothing to it."""
    async with StreamClient(
        rtc_url, "gain", video=SyntheticVideoTrack(), signaling="websocket"
    ) as victim:
        await collect(victim.video_frames, 2)
        async with websockets.connect(
            ws_url(asgi_server, "/ws/rtc/gain/"), origin=asgi_server
        ) as ws:

            async def ask(message):
                await ws.send(json.dumps(message))
                return json.loads(await asyncio.wait_for(ws.recv(), 10))

            reply = await ask(
                {
                    "type": "offer",
                    "sdp": victim.pc.localDescription.sdp,
                    "webrtc_id": victim.webrtc_id,
                }
            )
            assert (reply["type"], reply["meta"]["error"]) == (
                "failed",
                "connection_already_exists",
            )
            assert "token" not in reply
            reply = await ask(
                {
                    "type": "ice-candidate",
                    "webrtc_id": victim.webrtc_id,
                    "candidate": {
                        "candidate": "candidate:1 1 udp 1 10.9.9.9 9 typ host",
                        "sdpMid": "0",
                        "sdpMLineIndex": 0,
                    },
                }
            )
            assert (reply["type"], reply["meta"]["error"]) == ("failed", "unknown_connection")
            await ws.send(
                json.dumps({"type": "close", "webrtc_id": victim.webrtc_id, "token": "forged"})
            )
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)  # it closed this socket, nothing else
        # The HTTP trickle endpoint takes a stranger's candidate (no token, by design:
        # DTLS binds the media to the offer's fingerprints); it changes nothing.
        reply = await rawhttp.request(
            f"{rtc_url}gain/webrtc/offer",
            "POST",
            {
                "type": "ice-candidate",
                "webrtc_id": victim.webrtc_id,
                "candidate": {
                    "candidate": "candidate:1 1 udp 1 10.9.9.9 9 typ host",
                    "sdpMid": "0",
                    "sdpMLineIndex": 0,
                },
            },
        )
        assert reply.status == 200
        await drain(victim.video_frames)
        await collect(victim.video_frames, 10, timeout=5)
        assert victim.webrtc_id in manager().sessions
        assert (await live_record(victim.webrtc_id)).state == "connected"

    # The audio socket and the phone consumer: a start with a live id is refused (4409).
    async with websockets.connect(
        ws_url(asgi_server, "/ws/rtc/echo/websocket/offer"), origin=asgi_server
    ) as owner:
        await owner.send(json.dumps({"event": "start", "websocket_id": "audio-victim"}))
        session = None
        while session is None:
            message = json.loads(await asyncio.wait_for(owner.recv(), 10))
            if message.get("type") == "session":
                session = message["data"]
        for path, start in [
            ("/ws/rtc/echo/websocket/offer", {"event": "start", "websocket_id": "audio-victim"}),
            (
                "/rtc/echo/telephone/handler",
                {
                    "event": "start",
                    "streamSid": "audio-victim",
                    "start": {"streamSid": "audio-victim"},
                },
            ),
        ]:
            async with websockets.connect(ws_url(asgi_server, path), origin=asgi_server) as ws:
                await ws.send(json.dumps(start))
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    while True:
                        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                        assert message.get("type") != "session", (path, message)
                assert closed.value.rcvd.code == 4409, (path, closed.value)
        # A stranger's stop ends only the stranger's own socket.
        async with websockets.connect(
            ws_url(asgi_server, "/ws/rtc/echo/websocket/offer"), origin=asgi_server
        ) as ws:
            await ws.send(json.dumps({"event": "stop", "websocket_id": "audio-victim"}))
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
        await owner.send(json.dumps({"event": "ping"}))
        while json.loads(await asyncio.wait_for(owner.recv(), 10)).get("event") != "pong":
            pass
        assert "audio-victim" in manager().sessions
        assert (await live_record("audio-victim")).state in ("connected", "new", "connecting")
        assert session["token"] != victim.token


# -- 3. the sessions API --------------------------------------------------------------


@pytest.mark.media
async def test_the_sessions_api_refuses_non_staff_and_works_for_staff(
    rtc_url, asgi_server, no_server_errors
):
    _, joe = await login("joe")
    _, staff = await login("staff", staff=True)
    async with StreamClient(rtc_url, "echo", audio=ToneAudioTrack()) as client:
        await collect(client.audio_frames, 3)
        record = await live_record(client.webrtc_id)
        urls = [
            ("GET", f"{rtc_url}sessions/"),
            ("GET", f"{rtc_url}sessions/?live=1"),
            ("GET", f"{rtc_url}sessions/{record.pk}/"),
            ("POST", f"{rtc_url}sessions/{record.pk}/close/"),
        ]
        callers = {
            "anonymous": {},
            "the session's token": {"X-Session-Token": client.token},
            "a logged-in user": with_csrf(asgi_server, joe),
            "a logged-in user's cookie alone": cookie_only(joe),
        }
        for who, headers in callers.items():
            for method, url in urls:
                reply = await rawhttp.request(
                    url, method, b"" if method == "POST" else None, headers
                )
                assert reply.status in (401, 403), (who, method, url, reply.status, reply.text)
                assert client.webrtc_id not in reply.text, (who, url)
        # Staff: list and inspect; closing needs the CSRF token like any cookie POST.
        reply = await rawhttp.request(
            f"{rtc_url}sessions/?live=1&stream=echo", "GET", headers=cookie_only(staff)
        )
        assert reply.status == 200 and [s["webrtc_id"] for s in reply.json()] == [client.webrtc_id]
        reply = await rawhttp.request(
            f"{rtc_url}sessions/{record.pk}/", "GET", headers=cookie_only(staff)
        )
        detail = reply.json()
        assert reply.status == 200 and detail["state"] == "connected"
        assert client.token not in reply.text and "token" not in json.dumps(list(detail))
        reply = await rawhttp.request(
            f"{rtc_url}sessions/{record.pk}/close/", "POST", b"", cookie_only(staff)
        )
        assert reply.status == 403 and "CSRF" in reply.text, reply.text
        assert (await live_record(client.webrtc_id)).state == "connected"
        reply = await rawhttp.request(
            f"{rtc_url}sessions/{record.pk}/close/", "POST", b"", with_csrf(asgi_server, staff)
        )
        assert reply.status == 200, reply.text

        async def closed():
            r = await live_record(client.webrtc_id)
            return r if r.state == "closed" else None

        assert (await wait_for(closed, 10, "the staff close")).close_reason == "closed_by_staff"


# -- 4. Origin -----------------------------------------------------------------------

BROWSER_ROUTES = [
    "/ws/rtc/flip/",
    "/ws/rtc/echo/websocket/offer",
    "/rtc/echo/websocket/offer",
    "/ws/rtc/no-such-stream/",
]


async def test_a_foreign_origin_is_refused_on_every_browser_websocket_route(asgi_server):
    port = asgi_server.rsplit(":", 1)[1]
    foreign = [
        "http://evil.example",
        "null",
        f"http://evil.example:{port}",
        f"http://127.0.0.1.evil.example:{port}",
        "https://localhost.evil.example",
        "http://evil.example/http://127.0.0.1",
    ]
    for path in BROWSER_ROUTES:
        for origin in foreign:
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets.connect(ws_url(asgi_server, path), origin=origin):
                    pass
            assert refused.value.response.status_code == 403, (path, origin)
        for origin in [asgi_server, f"http://localhost:{port}"]:
            if "no-such-stream" in path:
                continue
            async with websockets.connect(ws_url(asgi_server, path), origin=origin) as ws:
                await ws.send(
                    '{"type": "ping"}' if path.endswith("/rtc/flip/") else '{"event": "ping"}'
                )
                assert "pong" in await asyncio.wait_for(ws.recv(), 5), (path, origin)


TELEPHONE_ROUTES = ["/rtc/echo/telephone/handler", "/ws/rtc/echo/telephone/handler"]


async def test_twilio_media_streams_skip_the_origin_check_and_need_the_signature(asgi_server):
    async def accepted(url, headers):
        async with websockets.connect(
            url, origin="http://evil.example", additional_headers=headers
        ) as ws:
            await ws.send('{"event": "ping"}')
            return json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"event": "pong"}

    for path in TELEPHONE_ROUTES:
        url = ws_url(asgi_server, path)
        # No auth token: Twilio sends no Origin to check, so none is (deliberately).
        assert await accepted(url, {})
        with override_settings(RTCSTREAM={**RTCSTREAM, "TWILIO_AUTH_TOKEN": TWILIO_TOKEN}):
            wrong = {
                "unsigned": {},
                "empty": {"X-Twilio-Signature": ""},
                "another token": {"X-Twilio-Signature": signature(url, {}, "not-the-token")},
                "another stream's URL": {
                    "X-Twilio-Signature": signature(
                        url.replace("/echo/", "/tone/"), {}, TWILIO_TOKEN
                    )
                },
                "the webhook's URL": {
                    "X-Twilio-Signature": signature(
                        url.replace("ws://", "http://").replace("handler", "incoming"),
                        {},
                        TWILIO_TOKEN,
                    )
                },
                "garbage": {"X-Twilio-Signature": "\u00e9t\u00e9=="},
            }
            for why, headers in wrong.items():
                with pytest.raises(websockets.InvalidStatus) as refused:
                    await accepted(url, headers)
                assert refused.value.response.status_code == 403, (path, why)
            assert await accepted(url, {"X-Twilio-Signature": signature(url, {}, TWILIO_TOKEN)})


async def test_unsigned_or_wrongly_signed_twilio_webhooks_are_refused(
    rtc_url, asgi_server, no_server_errors
):
    url = f"{rtc_url}echo/telephone/incoming"
    params = {"CallSid": "CA77", "From": "+15550100"}
    form = urllib.parse.urlencode(params).encode()
    content = {"Content-Type": "application/x-www-form-urlencoded"}
    with override_settings(RTCSTREAM={**RTCSTREAM, "TWILIO_AUTH_TOKEN": TWILIO_TOKEN}):
        wrong = {
            "unsigned": {},
            "another token": signature(url, params, "not-the-token"),
            "other parameters": signature(url, {**params, "From": "+15550199"}, TWILIO_TOKEN),
            "another stream's URL": signature(
                url.replace("/echo/", "/tone/"), params, TWILIO_TOKEN
            ),
            "garbage": "\u00e9t\u00e9==",
        }
        for why, sig in wrong.items():
            headers = {**content, **({"X-Twilio-Signature": sig} if sig else {})}
            reply = await rawhttp.request(url, "POST", form, headers)
            assert reply.status == 403, (why, reply.status, reply.text)
            assert reply.json()["meta"]["error"] == "invalid_signature"
            assert "<Stream" not in reply.text
        reply = await rawhttp.request(
            url,
            "POST",
            form,
            {**content, "X-Twilio-Signature": signature(url, params, TWILIO_TOKEN)},
        )
        assert reply.status == 200 and "<Stream url=" in reply.text, reply.text


# -- 5. CSRF under session-cookie authentication -------------------------------------


@pytest.mark.media
async def test_the_input_hook_under_session_cookie_auth_is_csrf_protected(
    rtc_url, asgi_server, no_server_errors
):
    from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret

    _, alice = await login("alice")
    peer = await Peer(rtc_url).open(cookie_only(alice))
    try:
        url = f"{rtc_url}gain/input"
        body = {"webrtc_id": peer.webrtc_id, "level": 0.1}
        secret = _get_new_csrf_string()
        refused = {
            "no CSRF token": cookie_only(alice),
            "the CSRF cookie without the header": {
                "Cookie": f"sessionid={alice}; csrftoken={secret}",
                "Origin": asgi_server,
            },
            "a header that does not match the cookie": {
                "Cookie": f"sessionid={alice}; csrftoken={secret}",
                "Origin": asgi_server,
                "X-CSRFToken": _mask_cipher_secret(_get_new_csrf_string()),
            },
            "a foreign Origin": with_csrf(asgi_server, alice, Origin="http://evil.example"),
            "a cross-site text/plain form": {**cookie_only(alice), "Content-Type": "text/plain"},
            # Holding the token does not lift the check on a cookie-authenticated request.
            "the cookie and the token, no CSRF token": {
                **cookie_only(alice),
                "X-Session-Token": peer.token,
            },
        }
        for why, headers in refused.items():
            reply = await rawhttp.request(
                url,
                "POST",
                json.dumps(body).encode() if "Content-Type" in headers else body,
                headers,
            )
            assert reply.status == 403 and "CSRF" in reply.text, (why, reply.status, reply.text)
        assert manager().sessions[peer.webrtc_id].inputs == [1.0]
        reply = await rawhttp.request(url, "POST", body, with_csrf(asgi_server, alice))
        assert (reply.status, reply.json()["inputs"]) == (200, {"level": 0.1}), reply.text
        assert manager().sessions[peer.webrtc_id].inputs == [0.1]
        # Without a cookie there is nothing to forge: the token alone, no CSRF token.
        reply = await rawhttp.request(url, "POST", {**body, "level": 0.2, "token": peer.token})
        assert (reply.status, reply.json()["inputs"]) == (200, {"level": 0.2}), reply.text
    finally:
        await peer.close()


@pytest.mark.media
async def test_closing_a_session_with_its_users_cookie_needs_the_csrf_token(rtc_url, asgi_server):
    _, alice = await login("alice")
    peer = await Peer(rtc_url).open(cookie_only(alice))
    try:
        # What <form enctype="text/plain" method="post"> on another site can send.
        forged = f'{{"type": "close", "webrtc_id": "{peer.webrtc_id}", "x": "="}}'.encode()
        reply = await rawhttp.request(
            f"{rtc_url}gain/webrtc/offer",
            "POST",
            forged,
            {**cookie_only(alice), "Content-Type": "text/plain", "Origin": "http://evil.example"},
        )
        assert reply.status == 403, (reply.status, reply.text)
        assert (await live_record(peer.webrtc_id)).state == "connected"
    finally:
        await peer.close()


# -- 6. tokens at rest and in comparison ---------------------------------------------


@pytest.mark.media
async def test_tokens_are_stored_hashed_and_compared_in_constant_time(rtc_url, monkeypatch, caplog):
    import hmac
    from types import SimpleNamespace

    from django.core.cache import cache
    from django.forms.models import model_to_dict

    from django_rtcstream.api import permissions

    caplog.set_level(logging.DEBUG)
    async with StreamClient(rtc_url, "gain", video=SyntheticVideoTrack()) as client:
        token = client.token
        record = await live_record(client.webrtc_id)
        assert record.token_hash == hashlib.sha256(token.encode()).hexdigest()
        row = json.dumps(model_to_dict(record), default=str)
        assert token not in row
        assert not await StreamSession.objects.filter(token_hash=token).aexists()

        calls: list[tuple[str, str]] = []
        verdict = {"force": None}

        def compare_digest(a, b):
            calls.append((a, b))
            real = hmac.compare_digest(a, b)
            return real if verdict["force"] is None else verdict["force"]

        monkeypatch.setattr(permissions, "hmac", SimpleNamespace(compare_digest=compare_digest))
        url = client.url("input")
        forged = "F" * len(token)
        reply = await rawhttp.request(
            url, "POST", {"webrtc_id": client.webrtc_id, "token": forged, "level": 0.3}
        )
        assert reply.status == 403
        assert calls == [(hashlib.sha256(forged.encode()).hexdigest(), record.token_hash)]
        calls.clear()
        reply = await rawhttp.request(
            url, "POST", {"webrtc_id": client.webrtc_id, "level": 0.3}, {"X-Session-Token": token}
        )
        assert reply.status == 200 and calls == [(record.token_hash, record.token_hash)]
        # The decision is compare_digest's and no other comparison's.
        verdict["force"] = False
        reply = await rawhttp.request(
            url, "POST", {"webrtc_id": client.webrtc_id, "token": token, "level": 0.4}
        )
        assert reply.status == 403
        verdict["force"] = True
        reply = await rawhttp.request(
            url, "POST", {"webrtc_id": client.webrtc_id, "token": forged, "level": 0.4}
        )
        assert reply.status == 200
        verdict["force"] = None
        calls.clear()
        reply = await rawhttp.open_sse(
            f"{rtc_url}gain/outputs?webrtc_id={client.webrtc_id}", {"X-Session-Token": forged}
        )
        assert reply.status == 403 and len(calls) == 1

        # SSE tickets are kept hashed too.
        reply = await rawhttp.request(
            client.url("outputs/ticket"), "POST", {"webrtc_id": client.webrtc_id, "token": token}
        )
        ticket = reply.json()["ticket"]
        keys = list(cache._cache)  # LocMemCache (tests.settings)
        assert any(hashlib.sha256(ticket.encode()).hexdigest() in k for k in keys), keys
        assert not any(ticket in k for k in keys)
        assert not any(ticket in repr(v) or token in repr(v) for v in cache._cache.values())
    # Neither the token nor the ticket went into the server's logs.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert token not in logged and ticket not in logged


# -- 7. no traceback in any failure body --------------------------------------------

SMALL_UPLOADS = {"DATA_UPLOAD_MAX_MEMORY_SIZE": 10_000}


@pytest.mark.media
async def test_no_failure_body_leaks_a_traceback(rtc_url, asgi_server, no_server_errors):
    _, joe = await login("joe")
    _, staff = await login("staff", staff=True)
    big = json.dumps({"webrtc_id": "x", "pad": "x" * 20_000}).encode()
    huge = json.dumps({"type": "offer", "sdp": "x" * 300_000}).encode()
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with StreamClient(rtc_url, "video-send", video=SyntheticVideoTrack()) as client:
        live = client.webrtc_id
        record = await live_record(live)
        cases = [
            # 404: unknown routes, unknown streams on every route kind, unknown sessions
            ("GET", "/rtc/no/such/route/", None, {}, 404),
            ("GET", "/nowhere", None, {}, 404),
            ("GET", "/rtc/no-such-stream/", None, {}, 404),
            ("GET", "/rtc/no-such-stream/config", None, {}, 404),
            ("POST", "/rtc/no-such-stream/webrtc/offer", {"type": "offer", "sdp": "v=0"}, {}, 404),
            ("POST", "/rtc/no-such-stream/input", {"webrtc_id": live}, {}, 404),
            ("GET", f"/rtc/no-such-stream/outputs?webrtc_id={live}", None, {}, 404),
            ("POST", "/rtc/no-such-stream/outputs/ticket", {"webrtc_id": live}, {}, 404),
            ("POST", "/rtc/no-such-stream/telephone/incoming", b"CallSid=CA1", form, 404),
            ("POST", "/rtc/flip/input", {"webrtc_id": "nobody"}, {}, 404),
            ("GET", "/rtc/video-send/outputs?webrtc_id=nobody", None, {}, 404),
            ("POST", "/rtc/flip/webrtc/offer", {"type": "close", "webrtc_id": "nobody"}, {}, 404),
            ("GET", f"/rtc/sessions/{uuid.uuid4()}/", None, cookie_only(staff), 404),
            ("GET", "/rtc/sessions/not-a-uuid/", None, cookie_only(staff), 404),
            # 405: every route with a method it does not take
            ("GET", "/rtc/flip/webrtc/offer", None, {}, 405),
            ("PUT", "/rtc/flip/webrtc/offer", b"{}", {}, 405),
            ("GET", "/rtc/gain/input", None, {}, 405),
            ("POST", f"/rtc/video-send/outputs?webrtc_id={live}", b"{}", {}, 403),  # CSRF first
            ("GET", "/rtc/video-send/outputs/ticket", None, {}, 405),
            ("GET", "/rtc/echo/telephone/incoming", None, {}, 405),
            ("DELETE", "/rtc/sessions/", None, with_csrf(asgi_server, staff), 405),
            ("GET", f"/rtc/sessions/{record.pk}/close/", None, cookie_only(staff), 405),
            # 400: bodies that are not what the route takes
            ("POST", "/rtc/flip/webrtc/offer", b"{not json", {}, 400),
            ("POST", "/rtc/flip/webrtc/offer", {"type": "offer", "sdp": "nonsense"}, {}, 400),
            ("POST", "/rtc/flip/webrtc/offer", {"type": "what"}, {}, 400),
            ("POST", "/rtc/gain/input", b"{not json", {}, 400),
            ("POST", "/rtc/gain/input", b"[1, 2]", {}, 400),
            ("POST", "/rtc/video-send/outputs/ticket", b"{not json", {}, 400),
            ("GET", "/rtc/video-send/outputs", None, {}, 400),
            (
                "POST",
                "/rtc/video-send/input",
                {"webrtc_id": live, "token": client.token, "nope": 1},
                {},
                400,
            ),
            # 403: permission, CSRF and signature refusals
            ("POST", "/rtc/video-send/input", {"webrtc_id": live}, {}, 403),
            ("GET", f"/rtc/video-send/outputs?webrtc_id={live}&token=forged", None, {}, 403),
            ("GET", f"/rtc/video-send/outputs?webrtc_id={live}&ticket=forged", None, {}, 403),
            ("POST", "/rtc/video-send/outputs/ticket", {"webrtc_id": live}, {}, 403),
            ("POST", "/rtc/video-send/webrtc/offer", {"type": "close", "webrtc_id": live}, {}, 403),
            ("GET", "/rtc/sessions/", None, {}, 403),
            ("GET", "/rtc/sessions/", None, cookie_only(joe), 403),
            ("POST", f"/rtc/sessions/{record.pk}/close/", b"", cookie_only(staff), 403),
            ("POST", "/rtc/video-send/input", {"webrtc_id": live}, cookie_only(joe), 403),
            # 413: bodies over the limits
            ("POST", "/rtc/flip/webrtc/offer", huge, {}, 413),
            ("POST", "/rtc/gain/input", big, {"Content-Type": "application/json"}, 413),
            (
                "POST",
                "/rtc/echo/telephone/incoming",
                b"CallSid=CA1&Pad=" + b"x" * 20_000,
                form,
                413,
            ),
            ("POST", "/rtc/video-send/outputs/ticket", huge, {}, 413),
        ]
        with override_settings(**SMALL_UPLOADS):
            twilio = {**RTCSTREAM, "TWILIO_AUTH_TOKEN": TWILIO_TOKEN}
            leaks, wrong = [], []
            for method, path, body, headers, status in cases:
                reply = await rawhttp.request(asgi_server + path, method, body, headers)
                if reply.status != status:
                    wrong.append((method, path, status, reply.status, reply.text[:200]))
                for marker in (
                    "Traceback",
                    'File "',
                    "site-packages",
                    "Django Version",
                    "Exception Value",
                    '.py", line',
                ):
                    if marker in reply.text:
                        leaks.append((method, path, reply.status, marker))
            with override_settings(RTCSTREAM=twilio):
                reply = await rawhttp.request(
                    f"{rtc_url}echo/telephone/incoming", "POST", b"CallSid=CA1", form
                )
                assert reply.status == 403 and "Traceback" not in reply.text
        assert not wrong, "\n".join(map(repr, wrong))
        assert not leaks, leaks
        # Refusals on the WebSockets say why, without a traceback either.
        async with websockets.connect(
            ws_url(asgi_server, "/ws/rtc/flip/"), origin=asgi_server
        ) as ws:
            for message in [
                "{not json",
                '{"type": "offer", "sdp": "nonsense"}',
                '{"type": 7}',
                '{"type": "ice-candidate", "candidate": 7}',
            ]:
                await ws.send(message)
                reply = await asyncio.wait_for(ws.recv(), 5)
                assert '"failed"' in reply and "Traceback" not in reply and 'File "' not in reply


@pytest.mark.media
async def test_a_failing_handler_tells_the_client_without_a_traceback(rtc_url):
    async with StreamClient(rtc_url, "faulty", video=SyntheticVideoTrack()) as client:
        error = await client.next_message("error", timeout=10)
    text = json.dumps(error)
    assert "Boom" in text and "Traceback" not in text and 'File "' not in text, text
