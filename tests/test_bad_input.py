"""Malformed client input (issue 13): a precise 4xx or ``error``, never a 500 or a traceback."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
import uuid
from types import SimpleNamespace

import pytest
import websockets

from django_rtcstream.api.permissions import TOKEN_HEADER, HoldsSessionToken
from django_rtcstream.client import StreamClient, SyntheticVideoTrack, http_json
from django_rtcstream.sessions.manager import manager
from tests.media import collect

pytestmark = [pytest.mark.django_db(transaction=True)]

NON_STRING_TOKENS = [3.14, True, False, 0, 10**30, [], ["x"], {}, {"token": "x"}]
ODD_TOKENS = [*NON_STRING_TOKENS, "\ud800"]  # and a lone surrogate, which UTF-8 cannot encode


def post_raw(
    url: str,
    body: bytes,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict]:
    """POST bytes as they are; (status, JSON body) whatever the status."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:  # Django's HTML error page
            return exc.code, {"status": None, "meta": {"error": raw[:200].decode(errors="replace")}}


@pytest.fixture
def no_server_errors(caplog):
    """Fail the test if anything logged an error or a traceback while it ran."""
    caplog.set_level(logging.INFO)
    yield
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]


def assert_refused(status: int, body: dict, expected: tuple[int, str]) -> None:
    assert (status, body["status"], body["meta"]["error"]) == (
        expected[0],
        "failed",
        expected[1],
    ), body
    assert body["meta"]["message"]


# -- 1. tokens that are not strings ----------------------------------------------------


@pytest.mark.parametrize("token", [3.14, True, 7, ["x"], {"a": 1}, None, b"x"])
def test_a_non_string_token_is_no_token(token):
    """Whatever carries it (a JSON body, Gradio's event data), a token that is not a
    string authorises nothing and raises nothing."""
    record = SimpleNamespace(token_hash="0" * 64, user_id=None)
    for request in [
        SimpleNamespace(META={}, GET={}, rtc_token=token),
        SimpleNamespace(META={TOKEN_HEADER: token}, GET={}),
        SimpleNamespace(META={}, GET={"token": token}),
    ]:
        assert HoldsSessionToken().has_object_permission(request, None, record) is False


@pytest.mark.media
async def test_non_string_tokens_are_refused_on_every_endpoint(
    rtc_url, asgi_server, no_server_errors
):
    async with StreamClient(rtc_url, "gain", video=SyntheticVideoTrack()) as client:
        await collect(client.video_frames, 2)
        denied = (403, "permission_denied")
        for token in ODD_TOKENS:
            status, body = await http_json(
                client.url("input"), {"webrtc_id": client.webrtc_id, "token": token, "level": 0.5}
            )
            assert_refused(status, body, denied)
            status, body = await http_json(
                client.url("webrtc/offer"),
                {"type": "close", "webrtc_id": client.webrtc_id, "token": token},
            )
            assert_refused(status, body, denied)
        # A query string only carries text: odd spellings of a token are plain wrong tokens.
        for query in ["token=3.14", "token=true", "token[]=x", "token=x&token=y", "token="]:
            status, body = await http_json(
                client.url(f"outputs?webrtc_id={client.webrtc_id}&{query}")
            )
            assert_refused(status, body, denied)
        # WebSocket signaling reads no token from its messages; one there changes nothing.
        port = asgi_server.rsplit(":", 1)[1]
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/ws/rtc/gain/", origin=asgi_server
        ) as ws:
            for token in NON_STRING_TOKENS:
                await ws.send(json.dumps({"type": "offer", "sdp": "nonsense", "token": token}))
                reply = json.loads(await ws.recv())
                assert (reply["type"], reply["meta"]["error"]) == ("failed", "invalid_offer")
                await ws.send(json.dumps({"type": "ping", "data": 1, "token": token}))
                assert json.loads(await ws.recv()) == {"type": "pong", "data": 1}
        # The session never noticed, and its own token still works.
        assert (await client.set_input(level=0.25))["inputs"] == {"level": 0.25}
        assert list(manager().sessions) == [client.webrtc_id]


# -- 2. JSON nested too deeply for Python's parser -----------------------------------


def nested(depth: int, inner: str = "") -> str:
    return "[" * depth + inner + "]" * depth


DEEP = nested(100_000)  # 200 kB: under MAX_SIGNALING_BYTES, far over the recursion limit


@pytest.mark.parametrize("body", [DEEP, '{"type": "offer", "sdp": ' + nested(50_000, "1") + "}"])
def test_deep_json_is_invalid_json(body):
    from django_rtcstream.exceptions import SignalingError
    from django_rtcstream.signaling.messages import parse_json

    with pytest.raises(SignalingError) as refused:
        parse_json(body, 1 << 20)
    assert (refused.value.code, refused.value.status) == ("invalid_json", 400)


@pytest.mark.media
async def test_deep_json_is_refused_over_http_and_websockets(
    rtc_url, asgi_server, no_server_errors
):
    invalid = (400, "invalid_json")
    async with StreamClient(rtc_url, "gain", video=SyntheticVideoTrack()) as client:
        await collect(client.video_frames, 2)
        for body in [
            DEEP.encode(),
            f'{{"webrtc_id": "{client.webrtc_id}", "level": {DEEP}}}'.encode(),
        ]:
            assert_refused(
                *await asyncio.to_thread(post_raw, client.url("webrtc/offer"), body), invalid
            )
            assert_refused(*await asyncio.to_thread(post_raw, client.url("input"), body), invalid)
        port = asgi_server.rsplit(":", 1)[1]
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/ws/rtc/gain/", origin=asgi_server, max_size=None
        ) as ws:
            await ws.send(DEEP)
            reply = json.loads(await ws.recv())
            assert (reply["type"], reply["meta"]["error"]) == ("failed", "invalid_json")
            # Near the parser's limit, whatever parses also goes back out in the pong.
            for depth in range(850, 1001, 5):
                await ws.send('{"type": "ping", "data": ' + nested(depth) + "}")
                reply = json.loads(await ws.recv())
                assert reply["type"] in ("pong", "failed"), reply
            await ws.send('{"type": "ping", "data": 1}')
            assert json.loads(await ws.recv()) == {"type": "pong", "data": 1}
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/ws/rtc/echo/websocket/offer", origin=asgi_server, max_size=None
        ) as ws:
            await ws.send(DEEP)
            reply = json.loads(await ws.recv())
            assert reply["type"] == "error" and "JSON" in reply["data"], reply
            await ws.send('{"event": "ping"}')
            assert json.loads(await ws.recv()) == {"event": "pong"}
        # The data channel: the deep message is dropped, the next ping answered.
        client.channel.send('{"type": "ping", "data": ' + nested(20_000) + "}")
        client.channel.send('{"type": "ping", "data": 2}')

        async def pong():
            while True:
                message = await client.messages.get()
                if message.get("type") == "pong":
                    return message

        assert (await asyncio.wait_for(pong(), 5))["data"] == 2
        assert list(manager().sessions) == [client.webrtc_id]


# -- 3. bodies over DATA_UPLOAD_MAX_MEMORY_SIZE ----------------------------------------

SMALL_UPLOADS = {"DATA_UPLOAD_MAX_MEMORY_SIZE": 10_000, "DATA_UPLOAD_MAX_NUMBER_FIELDS": 50}
BIG_FORM = urllib.parse.urlencode({"CallSid": "CA1", "Pad": "x" * 20_000}).encode()
MANY_FIELDS = urllib.parse.urlencode({f"f{i}": "1" for i in range(60)}).encode()
FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize("direct", [True, False])
async def test_bodies_django_will_not_read_get_413_or_400(rtc_url, direct, no_server_errors):
    from django.test import override_settings

    from tests.settings import RTCSTREAM

    too_large, too_many = (413, "request_too_large"), (400, "too_many_fields")
    with override_settings(**SMALL_UPLOADS, RTCSTREAM={**RTCSTREAM, "DIRECT_OFFERS": direct}):
        cases = [
            ("echo/telephone/incoming", BIG_FORM, FORM, too_large),
            ("echo/telephone/incoming", MANY_FIELDS, FORM, too_many),
            (
                "gain/input",
                json.dumps({"webrtc_id": "x", "pad": "x" * 20_000}).encode(),
                "application/json",
                too_large,
            ),
            ("gain/input", BIG_FORM, FORM, too_large),
            ("gain/input", MANY_FIELDS, FORM, too_many),
            (
                "gain/input",
                b'--b\r\nContent-Disposition: form-data; name="pad"\r\n\r\n'
                + b"x" * 20_000
                + b"\r\n--b--\r\n",
                "multipart/form-data; boundary=b",
                too_large,
            ),
            # Over DATA_UPLOAD_MAX_MEMORY_SIZE, under MAX_SIGNALING_BYTES.
            (
                "flip/webrtc/offer",
                json.dumps({"type": "offer", "sdp": "x" * 20_000}).encode(),
                "application/json",
                too_large,
            ),
        ]
        for path, body, content_type, expected in cases:
            reply = await asyncio.to_thread(post_raw, f"{rtc_url}{path}", body, content_type)
            assert_refused(*reply, expected)


async def test_a_signed_in_users_oversized_form_gets_413(rtc_url, no_server_errors):
    """DRF's CSRF check reads request.POST for session users, before any handler runs."""
    from asgiref.sync import sync_to_async
    from django.contrib.auth.models import User
    from django.test import Client, override_settings

    await sync_to_async(User.objects.create_user)("staff", password="pw", is_staff=True)
    client = Client()
    await sync_to_async(client.login)(username="staff", password="pw")
    # With a CSRF cookie and no X-CSRFToken header, the check looks for the form's token.
    cookie = {"Cookie": f"sessionid={client.cookies['sessionid'].value}; csrftoken={'x' * 32}"}
    with override_settings(**SMALL_UPLOADS):
        for path in ["gain/input", f"sessions/{uuid.uuid4()}/close/"]:
            reply = await asyncio.to_thread(post_raw, f"{rtc_url}{path}", BIG_FORM, FORM, cookie)
            assert_refused(*reply, (413, "request_too_large"))
