"""Offers answered before Django's request cycle (``signaling.direct``): same answers,
same users and permissions, and everything that is not an offer still goes to Django."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest
from asgiref.sync import sync_to_async
from channels.testing import ApplicationCommunicator
from django.contrib.auth.models import User
from django.core.checks import run_checks
from django.core.signals import request_started
from django.test import override_settings

from django_rtcstream.models import StreamSession
from django_rtcstream.registry import get_stream
from django_rtcstream.sessions.manager import manager
from django_rtcstream.signaling.direct import DirectOffers

pytestmark = [pytest.mark.django_db(transaction=True)]


def _post(
    url: str, body: bytes, cookie: str | None = None, method: str = "POST"
) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json", **({"Cookie": cookie} if cookie else {})}
    request = urllib.request.Request(
        url, data=body if method == "POST" else None, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def _offer(rtc_url: str, webrtc_id: str, cookie: str | None = None) -> tuple[int, dict]:
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    body = json.dumps({"type": "offer", "sdp": pc.localDescription.sdp, "webrtc_id": webrtc_id})
    status, reply = await asyncio.to_thread(
        _post, f"{rtc_url}flip/webrtc/offer", body.encode(), cookie
    )
    await pc.close()
    return status, json.loads(reply)


class _CountRequests:
    """Counts Django request cycles (``request_started``) while in a ``with`` block."""

    def __enter__(self) -> _CountRequests:
        self.count = 0
        request_started.connect(self._started)
        return self

    def __exit__(self, *exc: object) -> None:
        request_started.disconnect(self._started)

    def _started(self, **kwargs: object) -> None:
        self.count += 1


@pytest.mark.media
@pytest.mark.parametrize("direct", [True, False])
async def test_offers_skip_the_django_cycle_only_when_direct(rtc_url, direct):
    with (
        override_settings(RTCSTREAM={**_rtcstream(), "DIRECT_OFFERS": direct}),
        _CountRequests() as django,
    ):
        status, reply = await _offer(rtc_url, f"direct-{direct}")
        assert status == 200 and reply["type"] == "answer" and reply["token"], reply
        assert django.count == (0 if direct else 1)
        # Everything else is Django's: the stream's config, a GET on the offer URL.
        status, _ = await asyncio.to_thread(_post, f"{rtc_url}flip/config", b"", None, "GET")
        assert status == 200
        status, _ = await asyncio.to_thread(_post, f"{rtc_url}flip/webrtc/offer", b"", None, "GET")
        assert status == 405
        assert django.count == (2 if direct else 3)
        await manager().get(f"direct-{direct}").close("test_done")


@pytest.mark.media
@pytest.mark.parametrize("direct", [True, False])
async def test_the_offer_sees_the_logged_in_user_either_way(rtc_url, direct):
    from django.test import Client

    user = await sync_to_async(User.objects.create_user)("ann", password="pw")

    def log_in() -> str:
        client = Client()
        assert client.login(username="ann", password="pw")
        return f"sessionid={client.cookies['sessionid'].value}"

    cookie = await asyncio.to_thread(log_in)
    stream = get_stream("flip")
    stream.permission_classes = {"open": ["rest_framework.permissions.IsAuthenticated"]}
    try:
        with override_settings(RTCSTREAM={**_rtcstream(), "DIRECT_OFFERS": direct}):
            anonymous, refusal = await _offer(rtc_url, "anon")
            status, reply = await _offer(rtc_url, "ann", cookie)
    finally:
        stream.permission_classes = None
    assert (anonymous, refusal["meta"]["error"]) == (403, "permission_denied")
    assert status == 200, reply
    record = await StreamSession.objects.aget(webrtc_id="ann")
    assert record.user_id == user.pk
    assert not await StreamSession.objects.filter(webrtc_id="anon").aexists()
    await manager().get("ann").close("test_done")


async def test_a_path_that_only_looks_like_an_offer_goes_to_django(asgi_server):
    status, body = await asyncio.to_thread(
        _post, f"{asgi_server}/elsewhere/flip/webrtc/offer", b"{}"
    )
    assert status == 404 and b"status" not in body  # Django's 404, not a signaling failure
    status, body = await asyncio.to_thread(_post, f"{asgi_server}/rtc/nope/webrtc/offer", b"{}")
    assert status == 404 and json.loads(body)["meta"]["error"] == "unknown_stream"


async def test_a_client_that_leaves_mid_body_gets_nothing_and_leaves_nothing():
    from tests.asgi import django_app

    app = ApplicationCommunicator(
        DirectOffers(django_app),
        _scope([(b"host", b"testserver"), (b"content-type", b"application/json")]),
    )
    await app.send_input({"type": "http.request", "body": b'{"type": "off', "more_body": True})
    await app.send_input({"type": "http.disconnect"})
    await app.wait(timeout=2)
    assert await app.receive_nothing()
    assert not manager().sessions
    assert not await StreamSession.objects.aexists()


async def test_a_huge_body_is_refused_before_it_is_read():
    from tests.asgi import django_app

    app = ApplicationCommunicator(DirectOffers(django_app), _scope([(b"host", b"testserver")]))
    await app.send_input({"type": "http.request", "body": b"x" * 300_000, "more_body": True})
    start = await app.receive_output(timeout=2)  # answered with more of the body still to come
    body = await app.receive_output(timeout=2)
    assert start["status"] == 413
    assert json.loads(body["body"])["meta"]["error"] == "request_too_large"


def test_check_warns_that_direct_offers_skip_cors_middleware():
    cors = ["corsheaders.middleware.CorsMiddleware", "django.middleware.common.CommonMiddleware"]
    with override_settings(MIDDLEWARE=cors):
        assert "django_rtcstream.W003" in [m.id for m in run_checks()]
        with override_settings(RTCSTREAM={**_rtcstream(), "DIRECT_OFFERS": False}):
            assert "django_rtcstream.W003" not in [m.id for m in run_checks()]
    with override_settings(RTCSTREAM={**_rtcstream(), "DIRECT_OFFERS": "yes"}):
        assert "django_rtcstream.E009" in [m.id for m in run_checks()]


def _rtcstream() -> dict:
    from django.conf import settings

    return dict(settings.RTCSTREAM)


def _scope(headers: list[tuple[bytes, bytes]]) -> dict:
    return {
        "type": "http",
        "method": "POST",
        "path": "/rtc/flip/webrtc/offer",
        "root_path": "",
        "query_string": b"",
        "scheme": "http",
        "headers": headers,
    }


async def _exchange(scope: dict, body: bytes) -> tuple[int, dict, bytes]:
    from tests.asgi import django_app

    app = ApplicationCommunicator(DirectOffers(django_app), scope)
    await app.send_input({"type": "http.request", "body": body})
    start = await app.receive_output(timeout=5)
    content = b""
    while True:
        message = await app.receive_output(timeout=5)
        content += message.get("body", b"")
        if not message.get("more_body"):
            break
    return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, content


SECURITY = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
OFFER = json.dumps({"type": "offer", "sdp": "v=0", "webrtc_id": "plain"}).encode()


async def test_security_middleware_still_redirects_plain_http_offers_and_sets_its_headers():
    host = [(b"host", b"testserver"), (b"content-type", b"application/json")]
    with override_settings(
        MIDDLEWARE=SECURITY,
        SECURE_SSL_REDIRECT=True,
        SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
    ):
        status, headers, _ = await _exchange(_scope(host), OFFER)
        assert (status, headers["location"]) == (301, "https://testserver/rtc/flip/webrtc/offer")
        # Over HTTPS (as the proxy says) the offer reaches the view, with the headers.
        status, headers, body = await _exchange(
            _scope([*host, (b"x-forwarded-proto", b"https")]), OFFER
        )
    assert status == 400 and json.loads(body)["meta"]["error"] == "invalid_offer"
    assert headers["x-content-type-options"] == "nosniff"
    # The refused offer is on record as failed, and nothing stays live.
    assert [r.state async for r in StreamSession.objects.all()] == ["failed"]


async def test_a_host_outside_allowed_hosts_is_refused_by_django():
    status, _, body = await _exchange(_scope([(b"host", b"evil.example")]), OFFER)
    assert status == 400 and b"meta" not in body  # Django's own refusal, not the view's
    assert not await StreamSession.objects.aexists()
