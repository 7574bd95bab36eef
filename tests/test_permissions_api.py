"""Sessions belong to someone; staff see and close them; the OpenAPI document is valid."""

from __future__ import annotations

import asyncio

import pytest
from django.contrib.auth.models import User
from django.test import override_settings

from django_rtcstream.client import StreamClient, SyntheticVideoTrack, ToneAudioTrack, http_json
from django_rtcstream.models import StreamSession
from tests.media import collect

pytestmark = [pytest.mark.django_db(transaction=True)]


async def wait_state(webrtc_id, states, timeout=5.0):
    async def poll():
        while True:
            r = (
                await StreamSession.objects.filter(webrtc_id=webrtc_id)
                .order_by("-created_at")
                .afirst()
            )
            if r is not None and r.state in states:
                return r
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(poll(), timeout)


@pytest.mark.media
async def test_only_the_token_holder_may_touch_a_session(rtc_url):
    async with StreamClient(rtc_url, "gain", video=SyntheticVideoTrack()) as client:
        await collect(client.video_frames, 2)
        assert client.token and len(client.token) >= 40
        record = await StreamSession.objects.aget(webrtc_id=client.webrtc_id, state="connected")
        assert record.token_hash and client.token not in record.token_hash
        for body in [
            {"webrtc_id": client.webrtc_id, "level": 0.5},
            {"webrtc_id": client.webrtc_id, "level": 0.5, "token": "forged"},
        ]:
            status, reply = await http_json(client.url("input"), body)
            assert (status, reply["meta"]["error"]) == (403, "permission_denied")
        status, reply = await http_json(client.url(f"outputs?webrtc_id={client.webrtc_id}"))
        assert status == 403
        status, reply = await http_json(
            client.url("webrtc/offer"), {"type": "close", "webrtc_id": client.webrtc_id}
        )
        assert status == 403
        assert (await client.set_input(level=0.5))["status"] == "success"
        # Refusals did not disturb the session.
        await collect(client.video_frames, 3)
        assert (await StreamSession.objects.aget(pk=record.pk)).state == "connected"


@pytest.mark.media
async def test_open_sessions_mode_lets_the_webrtc_id_suffice(rtc_url):
    from tests.settings import RTCSTREAM

    with override_settings(RTCSTREAM={**RTCSTREAM, "OPEN_SESSIONS": True}):
        async with StreamClient(rtc_url, "gain", video=SyntheticVideoTrack()) as client:
            status, reply = await http_json(
                client.url("input"), {"webrtc_id": client.webrtc_id, "level": 0.25}
            )
            assert status == 200 and reply["inputs"] == {"level": 0.25}


@pytest.mark.media
async def test_open_permission_per_stream(rtc_url):
    from django_rtcstream.registry import get_stream

    stream = get_stream("flip")
    stream.permission_classes = {"open": ["rest_framework.permissions.IsAuthenticated"]}
    try:
        status, reply = await http_json(
            f"{rtc_url}flip/webrtc/offer", {"type": "offer", "sdp": "v=0", "webrtc_id": "anon"}
        )
    finally:
        stream.permission_classes = None
    assert (status, reply["meta"]["error"]) == (403, "permission_denied")
    assert not await StreamSession.objects.filter(webrtc_id="anon").aexists()


@pytest.mark.media
async def test_sessions_api_is_staff_only_and_closes_sessions(rtc_url, asgi_server):
    from asgiref.sync import sync_to_async
    from django.test import Client

    await sync_to_async(User.objects.create_user)("staff", password="pw", is_staff=True)
    await sync_to_async(User.objects.create_user)("joe", password="pw")
    async with StreamClient(rtc_url, "echo", audio=ToneAudioTrack()) as client:
        await collect(client.audio_frames, 3)

        def api_calls():
            anonymous = Client().get("/rtc/sessions/")
            joe = Client()
            joe.login(username="joe", password="pw")
            forbidden = joe.get("/rtc/sessions/")
            staff = Client()
            staff.login(username="staff", password="pw")
            listing = staff.get("/rtc/sessions/?live=1&stream=echo").json()
            detail = staff.get(f"/rtc/sessions/{listing[0]['id']}/").json()
            return anonymous.status_code, forbidden.status_code, listing, detail, staff

        anonymous, forbidden, listing, detail, staff = await asyncio.to_thread(api_calls)
        assert (anonymous, forbidden) == (403, 403)
        assert [s["webrtc_id"] for s in listing] == [client.webrtc_id]
        assert detail["state"] == "connected" and "token_hash" not in detail
        # The close goes to the session's worker through the channel layer: make the
        # request against the real server so the session's event loop is running.
        session_id = detail["id"]
        cookie = staff.cookies["sessionid"].value
        csrf = await asyncio.to_thread(_csrf_post, asgi_server, session_id, cookie)
        assert csrf == 200
        closed = await wait_state(client.webrtc_id, {"closed"})
    assert closed.close_reason == "closed_by_staff"


def _csrf_post(base, session_id, cookie):
    import urllib.error
    import urllib.request

    from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret

    secret = _get_new_csrf_string()
    request = urllib.request.Request(
        f"{base}/rtc/sessions/{session_id}/close/",
        data=b"",
        method="POST",
        headers={
            "Cookie": f"sessionid={cookie}; csrftoken={secret}",
            "X-CSRFToken": _mask_cipher_secret(secret),
            "Referer": base + "/",
            "Origin": base,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return (exc.code, exc.read()[:300])


async def test_several_sse_subscribers_each_get_every_event(rtc_url):
    async with StreamClient(rtc_url, "video-send", video=SyntheticVideoTrack()) as client:
        from django_rtcstream.registry import get_stream

        stream = get_stream("video-send")

        async def take(n):
            out = []
            async for o in stream.output_stream(client.webrtc_id):
                out.append(o.args[0])
                if len(out) == n:
                    return out

        a, b = await asyncio.wait_for(asyncio.gather(take(4), take(4)), 10)
    assert a == b and a == sorted(a)


async def test_openapi_document_is_valid_and_carries_input_bounds(rtc_url):
    from openapi_spec_validator import validate

    status, doc = await http_json(f"{rtc_url}openapi.json")
    assert status == 200
    validate(doc)
    gain = doc["components"]["schemas"]["GainInputs"]["properties"]["level"]
    assert (gain["minimum"], gain["maximum"], gain["type"]) == (0, 1, "number")
    assert "/rtc/{stream}/webrtc/offer" in doc["paths"] and "/rtc/echo/input" in doc["paths"]
