"""``<prefix>/metrics`` on one worker: who may read it, and figures that follow real sessions.

The body is read by prometheus_client's own parser. Counters are process-wide and
the suite runs many sessions, so the tests compare a scrape before and after.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request

import pytest
from asgiref.sync import sync_to_async
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from django_rtcstream.client import StreamClient, SyntheticVideoTrack, ToneAudioTrack
from tests.media import collect

pytestmark = [pytest.mark.django_db(transaction=True)]

TOKEN = "scraper-secret-0123456789"


def get(url, headers=None):
    """(status, headers, body text) of a GET, errors included."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def parse(text):
    """{(sample name, frozenset of labels): value} of a Prometheus text body."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples, name, **labels):
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def scrape(rtc_url):
    status, headers, body = await asyncio.to_thread(
        get, f"{rtc_url}metrics", {"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain; version="), headers
    return parse(body)


async def until(predicate, rtc_url, timeout=30.0):  # a hang guard: CI's full run is busy
    """Scrape until ``predicate(samples)`` holds; the samples."""
    deadline = time.monotonic() + timeout
    while True:
        samples = await scrape(rtc_url)
        if predicate(samples):
            return samples
        assert time.monotonic() < deadline, "the metrics did not move in time"
        await asyncio.sleep(0.1)


@pytest.fixture
def metrics_token(settings):
    settings.RTCSTREAM = {**settings.RTCSTREAM, "METRICS_TOKEN": TOKEN}


def _login(username, staff):
    from django.contrib.auth.models import User

    User.objects.create_user(username, password="pw", is_staff=staff)
    client = Client()
    assert client.login(username=username, password="pw")
    return client.cookies["sessionid"].value


async def test_anonymous_and_wrong_tokens_are_refused_staff_and_the_token_are_let_in(
    rtc_url, metrics_token
):
    url = f"{rtc_url}metrics"
    status, headers, body = await asyncio.to_thread(get, url)
    assert status == 401 and '"not_authenticated"' in body, body
    assert headers["WWW-Authenticate"].startswith("Bearer"), headers
    assert "METRICS_TOKEN" in body and "log in as staff" in body

    status, headers, body = await asyncio.to_thread(
        get, url, {"Authorization": "Bearer not-the-token"}
    )
    assert status == 401 and '"invalid_token"' in body, body
    assert 'error="invalid_token"' in headers["WWW-Authenticate"]

    user_cookie = await sync_to_async(_login)("someone", False)
    status, _, body = await asyncio.to_thread(get, url, {"Cookie": f"sessionid={user_cookie}"})
    assert status == 403 and '"permission_denied"' in body, body

    staff_cookie = await sync_to_async(_login)("staff", True)
    status, _, body = await asyncio.to_thread(get, url, {"Cookie": f"sessionid={staff_cookie}"})
    assert status == 200 and "rtcstream_sessions_live" in body, body

    status, _, body = await asyncio.to_thread(get, url, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    parse(body)  # well-formed for Prometheus


async def test_without_a_configured_token_any_bearer_token_is_refused(rtc_url):
    status, _, body = await asyncio.to_thread(
        get, f"{rtc_url}metrics", {"Authorization": "Bearer anything"}
    )
    assert status == 401 and "has no RTCSTREAM['METRICS_TOKEN']" in body, body


@pytest.mark.media
async def test_counters_follow_sessions_as_they_start_stream_and_end(rtc_url, metrics_token):
    before = await scrape(rtc_url)
    started = value(before, "rtcstream_sessions_started_total", stream="echo", transport="webrtc")
    ended = value(before, "rtcstream_sessions_ended_total", stream="echo", reason="client_hangup")
    frames_in = value(before, "rtcstream_frames_total", stream="echo", direction="in")
    receive_calls = value(before, "rtcstream_handler_call_seconds_count", stream="echo")

    async with StreamClient(rtc_url, "echo", audio=ToneAudioTrack()) as client:
        await collect(client.audio_frames, 10)
        live = await until(
            lambda s: (
                value(s, "rtcstream_sessions_live", stream="echo", transport="webrtc") == 1
                and value(s, "rtcstream_sessions_started_total", stream="echo", transport="webrtc")
                == started + 1
            ),
            rtc_url,
        )
        assert value(live, "rtcstream_frames_total", stream="echo", direction="in") > frames_in
        assert value(live, "rtcstream_frames_total", stream="echo", direction="out") > 0
        # receive() and emit() are timed, each in its own histogram.
        assert value(live, "rtcstream_handler_call_seconds_count", stream="echo", kind="emit") > 0
        assert value(live, "rtcstream_handler_call_seconds_count", stream="echo") > receive_calls
        # The sampler runs: the loop's lag is measured, the pool is watched.
        assert value(live, "rtcstream_event_loop_lag_seconds_count") > 0
        assert ("rtcstream_handler_pool_queued", frozenset({("worker", _worker())})) in live

    after = await until(
        lambda s: (
            value(s, "rtcstream_sessions_ended_total", stream="echo", reason="client_hangup")
            == ended + 1
        ),
        rtc_url,
    )
    assert value(after, "rtcstream_sessions_live", stream="echo", transport="webrtc") == 0
    assert value(after, "rtcstream_sessions_ended_total", stream="echo", state="closed") >= 1


@pytest.mark.media
async def test_handler_errors_and_refusals_are_counted_by_reason(rtc_url, metrics_token):
    from django_rtcstream.client import SignalingFailed

    before = await scrape(rtc_url)
    errors = value(before, "rtcstream_handler_errors_total", stream="faulty")
    refused = value(
        before,
        "rtcstream_admissions_refused_total",
        stream="limited",
        reason="concurrency_limit_reached",
    )
    async with StreamClient(rtc_url, "faulty", video=SyntheticVideoTrack()) as client:
        await client.next_message("error", timeout=10)
    await until(
        lambda s: value(s, "rtcstream_handler_errors_total", stream="faulty") > errors, rtc_url
    )

    async with StreamClient(rtc_url, "limited", audio=ToneAudioTrack()):
        with pytest.raises(SignalingFailed) as refusal:
            await StreamClient(rtc_url, "limited", audio=ToneAudioTrack()).connect()
        assert refusal.value.code == "concurrency_limit_reached"
    after = await scrape(rtc_url)
    assert (
        value(
            after,
            "rtcstream_admissions_refused_total",
            stream="limited",
            reason="concurrency_limit_reached",
        )
        == refused + 1
    )


def _worker():
    from django_rtcstream.conf import rtc_settings

    return rtc_settings.worker_name()


@override_settings()
async def test_the_endpoint_is_in_the_urlconf_beside_health(rtc_url):
    from django.urls import reverse

    assert reverse("rtcstream:metrics") == "/rtc/metrics"
