"""The StreamSession admin: changelist, filters, read-only change view, terminate, delete."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_rtcstream.admin import humanize_duration
from django_rtcstream.client import StreamClient, ToneAudioTrack
from django_rtcstream.models import StreamSession
from tests import streams
from tests.media import collect

CHANGELIST = reverse("admin:django_rtcstream_streamsession_changelist")
SECRET_HASH = "5e" * 32


def make(stream, state, **fields):
    fields.setdefault("webrtc_id", f"{state}-{uuid.uuid4().hex[:8]}")
    if state in ("closed", "failed"):
        fields.setdefault("closed_at", timezone.now())
    return StreamSession.objects.create(stream=stream, state=state, **fields)


@pytest.fixture
def rows(db):
    return {
        "live": make(
            "echo",
            "connected",
            worker="host-a:1",
            inputs=[0.5],
            frames_in=12,
            frames_out=11,
            token_hash=SECRET_HASH,
        ),
        "new": make("tone", "new", worker="host-b:2", inputs=[{"text": "x" * 200}]),
        "closed": make("echo", "closed", channel="websocket", close_reason="client_hangup"),
        "failed": make("flip", "failed", close_reason="worker_lost", call_sid="CA123"),
    }


def listed(response):
    return {s.webrtc_id for s in response.context["cl"].result_list}


def messages_of(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


def action(client, name, sessions, **extra):
    return client.post(
        CHANGELIST,
        {"action": name, "_selected_action": [s.pk for s in sessions], **extra},
        follow=True,
    )


def test_changelist_shows_sessions_of_every_state(admin_client, rows):
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    assert listed(response) == {r.webrtc_id for r in rows.values()}
    html = response.content.decode()
    for text in [
        "host-a:1",
        "client_hangup",
        "worker_lost",
        "[0.5]",
        "Terminate selected sessions",
        "By live / finished",
    ]:
        assert text in html, text
    assert "x" * 100 not in html  # long inputs are shortened
    assert "Add stream session" not in html
    assert SECRET_HASH not in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("stream=echo", {"live", "closed"}),
        ("state=failed", {"failed"}),
        ("channel=websocket", {"closed"}),
        ("live=yes", {"live", "new"}),
        ("live=no", {"closed", "failed"}),
        ("live=yes&stream=echo", {"live"}),
        ("q=host-b", {"new"}),
        ("q=CA123", {"failed"}),
    ],
)
def test_filters_and_search(admin_client, rows, query, expected):
    response = admin_client.get(f"{CHANGELIST}?{query}")
    assert response.status_code == 200
    assert listed(response) == {rows[name].webrtc_id for name in expected}


def test_age_is_humanized_up_to_close_or_now(admin_client, db):
    now = timezone.now()
    running = make("echo", "connected", webrtc_id="running")
    done = make("echo", "closed", webrtc_id="done")
    StreamSession.objects.filter(pk=running.pk).update(created_at=now - timedelta(minutes=3))
    StreamSession.objects.filter(pk=done.pk).update(
        created_at=now - timedelta(days=2, hours=5), closed_at=now - timedelta(days=1)
    )
    html = admin_client.get(CHANGELIST).content.decode()
    assert "3m 0" in html and "1d 5h" in html
    assert [humanize_duration(timedelta(seconds=s)) for s in (7, 65, 3720, 90000)] == [
        "7s",
        "1m 05s",
        "1h 02m",
        "1d 1h",
    ]


def test_change_view_is_read_only_and_never_shows_the_token_hash(admin_client, rows):
    url = reverse("admin:django_rtcstream_streamsession_change", args=[rows["live"].pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert rows["live"].webrtc_id in html and "host-a:1" in html
    assert SECRET_HASH not in html and "token_hash" not in html.lower()
    assert 'name="webrtc_id"' not in html and 'name="_save"' not in html
    assert admin_client.get(reverse("admin:django_rtcstream_streamsession_add")).status_code == 403


def test_only_finished_sessions_can_be_deleted(admin_client, rows):
    def delete_url(name):
        return reverse("admin:django_rtcstream_streamsession_delete", args=[rows[name].pk])

    assert admin_client.get(delete_url("live")).status_code == 403
    assert admin_client.get(delete_url("closed")).status_code == 200
    selected = [rows["live"], rows["closed"], rows["failed"]]
    confirm = action(admin_client, "delete_selected", selected)
    assert "1 live session(s) skipped" in confirm.content.decode()
    done = action(admin_client, "delete_selected", selected, post="yes")
    assert "Successfully deleted 2" in " ".join(messages_of(done))
    assert set(StreamSession.objects.values_list("webrtc_id", flat=True)) == {
        rows["live"].webrtc_id,
        rows["new"].webrtc_id,
    }


def test_terminate_reports_sessions_already_finished(admin_client, rows):
    response = action(admin_client, "terminate_sessions", [rows["closed"], rows["failed"]])
    assert messages_of(response) == ["Terminated: 0; already finished: 2."]
    assert StreamSession.objects.get(pk=rows["closed"].pk).close_reason == "client_hangup"


def test_terminate_needs_the_change_permission(client, rows):
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_streamsession"))
    client.login(username="viewer", password="pw")
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    assert "Terminate selected sessions" not in response.content.decode()


async def wait_closed(webrtc_id, timeout=5.0):
    async def poll():
        while True:
            record = await StreamSession.objects.filter(webrtc_id=webrtc_id).afirst()
            if record is not None and not record.is_live:
                return record
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(poll(), timeout)


@pytest.mark.media
@pytest.mark.django_db(transaction=True)
async def test_terminate_action_closes_a_real_live_session(rtc_url):
    admin = await sync_to_async(User.objects.create_superuser)("boss", password="pw")
    finished = await sync_to_async(make)("echo", "closed")
    async with StreamClient(rtc_url, "echo", audio=ToneAudioTrack()) as client:
        await collect(client.audio_frames, 3)
        live = await StreamSession.objects.aget(webrtc_id=client.webrtc_id, state="connected")

        def terminate():
            browser = Client()
            browser.force_login(admin)
            return messages_of(action(browser, "terminate_sessions", [live, finished]))

        # The admin view is sync: run it in a thread whose async_to_sync reaches back
        # to this loop, where the uvicorn server and the session live.
        reported = await sync_to_async(terminate, thread_sensitive=False)()
        closed = await wait_closed(client.webrtc_id)
    assert reported == ["Terminated: 1; already finished: 1."]
    assert (closed.state, closed.close_reason) == ("closed", "terminated_by_admin")
    assert (client.webrtc_id, "shutdown") in streams.EVENTS
