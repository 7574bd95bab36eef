"""Live session stats (sessions/stats.py, sessions/readings.py): sampled from real
sessions, kept on the record, shown in the sessions API, the admin and the data
channel's ``stats`` messages."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.urls import reverse

from django_rtcstream.charts import line_chart
from django_rtcstream.client import StreamClient, ToneAudioTrack
from django_rtcstream.models import StreamSession
from django_rtcstream.sessions.manager import local_session
from django_rtcstream.sessions.readings import FIGURES, Reading, make_sample
from django_rtcstream.sessions.stats import Summary
from tests.media import collect
from tests.test_audio_socket import AudioSocket, tone

FAST = {"STATS_INTERVAL": 0.3, "HEARTBEAT_INTERVAL": 0.5}


def fast(**more):
    return override_settings(RTCSTREAM={**settings.RTCSTREAM, **FAST, **more})


async def until(predicate, timeout=20.0, step=0.05):
    """Wait until ``predicate()`` (sync or async) is truthy; returns its value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(step)


async def record_of(webrtc_id):
    return await StreamSession.objects.filter(webrtc_id=webrtc_id).order_by("-created_at").afirst()


def staff_client():
    client = Client()
    client.force_login(User.objects.get(username="staff"))
    return client


# -- a WebRTC session ------------------------------------------------------------------------


@pytest.mark.media
@pytest.mark.django_db(transaction=True)
async def test_a_webrtc_session_shows_rtt_and_bitrate_on_its_record_the_api_and_the_admin():
    from django_rtcstream.testing import live_server
    from tests.asgi import application

    await sync_to_async(User.objects.create_superuser)("staff", password="pw")
    with fast():
        async with live_server(application) as url:
            async with StreamClient(f"{url}/rtc/", "echo", audio=ToneAudioTrack()) as client:
                await collect(client.audio_frames, 3)
                webrtc_id = client.webrtc_id

                # The heartbeat writes the latest sample once RTCP has given an RTT
                # (receiver reports every 0.5-1.5 s each way).
                async def live_rtt():
                    record = await record_of(webrtc_id)
                    return record if (record.stats or {}).get("rtt_ms") else None

                record = await until(live_rtt)
                assert record.state == "connected"
                stats = record.stats
                assert set(FIGURES) <= set(stats)
                # Loopback: tiny but above zero, and far below anything a network adds.
                assert 0 < stats["rtt_ms"] < 200
                # One sample covers 0.3 s, on a busy machine: sane, not exact (the median
                # over the session is checked at close).
                assert 0 < stats["bitrate_in_kbps"] < 1000
                assert 0 < stats["bitrate_out_kbps"] < 1000
                assert stats["loss_in"] == 0 and stats["packets_lost_in"] == 0
                assert stats["bytes_in"] > 0 and stats["bytes_out"] > 0
                assert stats["frames_in"] > 0 and stats["frames_out"] > 0
                assert 0 < stats["fps_in"] < 150  # 50 audio frames a second, give or take
                assert stats["audio_level_in"] is not None  # the RTP audio-level extension
                assert -127 <= stats["audio_level_in"] <= 0
                assert stats["jitter_in_ms"] is not None and stats["jitter_in_ms"] >= 0
                history = record.stats_history
                assert len(history["t"]) == len(history["rtt_ms"]) >= 1
                assert record.stats_summary == {}  # only at close

                def api():
                    staff = staff_client()
                    detail = staff.get(f"/rtc/sessions/{record.pk}/")
                    live_list = staff.get(
                        reverse("admin:django_rtcstream_streamsession_changelist") + "?live=yes"
                    )
                    return detail.status_code, detail.json(), live_list

                status, detail, live_list = await asyncio.to_thread(api)
                assert status == 200
                assert detail["stats"]["rtt_ms"] > 0 and detail["stats_history"]["t"]
                # The list of live sessions reloads itself and shows the figures.
                page = live_list.content.decode()
                assert "django_rtcstream/admin-live.js" in page and "data-refresh-seconds" in page
                assert "bit/s in / out" in page and " ms</td>" in page

            # Closed: the summary of the whole session is on the record.
            async def closed():
                record = await record_of(webrtc_id)
                return record if record.state == "closed" else None

            record = await until(closed)
    summary = record.stats_summary
    assert summary["samples"] >= len(record.stats_history["t"]) >= 1
    rtt = summary["rtt_ms"]
    assert 0 < rtt["median"] <= rtt["worst"] < 200  # worst RTT: the highest
    bitrate = summary["bitrate_in_kbps"]
    assert 0 <= bitrate["worst"] <= bitrate["median"]  # worst bitrate: the lowest
    # Opus at 48 kHz from the client, plus RTP/SRTP/RTCP overhead: tens of kbit/s.
    assert 16 < bitrate["median"] < 400
    assert 16 < summary["bitrate_out_kbps"]["median"] < 400
    assert 25 < summary["fps_in"]["median"] < 75  # 50 frames a second
    assert record.stats["rtt_ms"] > 0  # the last sample stays

    def change_page():
        staff = staff_client()
        url = reverse("admin:django_rtcstream_streamsession_change", args=[record.pk])
        return staff.get(url), staff.get(reverse("admin:django_rtcstream_streamsession_changelist"))

    response, all_sessions = await asyncio.to_thread(change_page)
    assert response.status_code == 200
    html = response.content.decode()
    for figure in ("RTT", "Bitrate", "Loss"):
        assert f'data-figure="{figure}"' in html
    assert html.count("<polyline") >= 3  # a line per chart at least (bitrate: in and out)
    assert "summary (median / worst)" in html.lower() and "rtt_ms" in html
    # Only the list of live sessions reloads itself.
    assert "admin-live.js" not in all_sessions.content.decode()


@pytest.mark.media
@pytest.mark.django_db(transaction=True)
async def test_the_stats_message_reaches_only_a_client_that_asked_for_it():
    from django_rtcstream.testing import live_server
    from tests.asgi import application

    with fast():
        async with live_server(application) as url:
            async with StreamClient(f"{url}/rtc/", "echo", audio=ToneAudioTrack()) as client:
                await collect(client.audio_frames, 3)
                session = local_session(client.webrtc_id)
                await until(lambda: session.stats.summary.samples >= 2)
                unasked = [m for m in list(client.messages._queue) if m.get("type") == "stats"]
                assert unasked == []  # FastRTC's clients never see a message they do not know
                client.channel.send(json.dumps({"type": "stats", "data": True}))
                message = await client.next_message("stats", timeout=10)
                assert message["via"] == "datachannel"
                assert set(FIGURES) <= set(message["data"])
                assert message["data"]["bitrate_out_kbps"] > 0
                client.channel.send(json.dumps({"type": "stats", "data": False}))
                await until(lambda: not session.stats.subscribed)


@pytest.mark.media
@pytest.mark.django_db(transaction=True)
async def test_stats_interval_zero_samples_and_writes_nothing():
    from django_rtcstream.testing import live_server
    from tests.asgi import application

    with fast(STATS_INTERVAL=0):
        async with live_server(application) as url:
            async with StreamClient(f"{url}/rtc/", "echo", audio=ToneAudioTrack()) as client:
                await collect(client.audio_frames, 3)
                webrtc_id = client.webrtc_id
                session = local_session(webrtc_id)
                client.channel.send(json.dumps({"type": "stats", "data": True}))
                first = (await record_of(webrtc_id)).heartbeat_at

                # Two heartbeats later (frames counted, so the beats did write), still none.
                async def beaten():
                    record = await record_of(webrtc_id)
                    return record if record.heartbeat_at > first and record.frames_in else None

                record = await until(beaten)
                await until(
                    lambda: session.stats.subscribed is False and session.stats.latest is None
                )
                assert record.stats == {} and record.stats_history == {}
                assert not any(t.get_name().endswith(":stats") for t in session._tasks)
                assert [m for m in list(client.messages._queue) if m.get("type") == "stats"] == []

            async def closed():
                record = await record_of(webrtc_id)
                return record if record.state == "closed" else None

            record = await until(closed)
    assert (record.stats, record.stats_history, record.stats_summary) == ({}, {}, {})


# -- a WebSocket audio session ---------------------------------------------------------------


@pytest.mark.media
@pytest.mark.django_db(transaction=True)
async def test_a_websocket_audio_session_has_its_bytes_and_bitrate_but_no_rtt():
    from django_rtcstream.testing import live_server
    from tests.asgi import application

    with fast():
        async with live_server(application) as url:
            async with AudioSocket(url, "echo") as socket:
                session = await socket.start("ws-stats", sample_rate=8000, output_sample_rate=8000)
                assert session is not None, socket.messages
                webrtc_id = session["webrtc_id"]
                player = asyncio.ensure_future(socket.play(tone(440, 8000, 8.0), 8000))
                try:

                    async def sampled():
                        record = await record_of(webrtc_id)
                        stats = record.stats or {}
                        return record if (stats.get("bitrate_out_kbps") or 0) > 0 else None

                    record = await until(sampled)
                finally:
                    player.cancel()
    stats = record.stats
    assert record.channel == "websocket"
    # 8 kHz mu-law is 64 kbit/s of audio; base64 in JSON events makes it ~100 on the wire.
    assert 30 < stats["bitrate_in_kbps"] < 300
    assert 0 < stats["bitrate_out_kbps"] < 300
    assert stats["bytes_in"] > 0 and stats["bytes_out"] > 0
    assert stats["frames_in"] > 0
    # TCP: no RTT, jitter or loss figures to read.
    for figure in ("rtt_ms", "jitter_in_ms", "loss_in", "loss_out", "audio_level_in"):
        assert stats[figure] is None


# -- the pieces on their own -----------------------------------------------------------------


def test_a_sample_computes_rates_and_loss_between_two_readings():
    before, now = Reading(), Reading()
    before.at, now.at = 10.0, 12.0
    before.bytes_in, now.bytes_in = 1000, 26000  # 25 kB in 2 s: 100 kbit/s
    before.bytes_out, now.bytes_out = 0, 5000
    before.received_in, now.received_in = 100, 190
    before.lost_in, now.lost_in = 0, 10
    before.frames_in, now.frames_in = 0, 100
    sample = make_sample(now, before)
    assert sample["bitrate_in_kbps"] == 100.0 and sample["bitrate_out_kbps"] == 20.0
    assert sample["loss_in"] == 0.1  # 10 lost of 100 expected
    assert sample["fps_in"] == 50.0
    first = make_sample(now, None)  # no reading before: totals only
    assert first["bitrate_in_kbps"] is None and first["loss_in"] is None
    assert first["bytes_in"] == 26000


def test_the_summary_keeps_the_median_and_the_worst_and_stays_bounded(monkeypatch):
    from django_rtcstream.sessions import stats

    monkeypatch.setattr(stats, "SUMMARY_VALUES", 64)
    summary = Summary()
    for i in range(1000):
        summary.add({"rtt_ms": float(i % 10), "bitrate_in_kbps": 100.0 - (i % 10), "loss_in": None})
    result = summary.as_dict()
    assert result["samples"] == 1000
    assert result["rtt_ms"]["worst"] == 9.0 and result["bitrate_in_kbps"]["worst"] == 91.0
    assert 3 <= result["rtt_ms"]["median"] <= 6
    assert result["loss_in"] == {"median": None, "worst": None}
    assert all(len(values) < 64 for values in summary.values.values())


def test_a_chart_leaves_gaps_where_a_figure_was_missing():
    svg = str(line_chart("RTT", "ms", [("rtt", [1.0, 2.0, None, 4.0])]))
    assert svg.count("<polyline") == 2  # one line before the gap, one after
    assert "rtt 4.0 ms" in svg


@pytest.mark.django_db
def test_the_openapi_document_describes_the_stats_of_a_session(client):
    document = client.get("/rtc/openapi.json").json()
    schemas = document["components"]["schemas"]
    session = schemas["Session"]["properties"]
    assert session["stats"] == {"$ref": "#/components/schemas/StatsSample"}
    assert session["stats_summary"] == {"$ref": "#/components/schemas/StatsSummary"}
    assert set(FIGURES) <= set(schemas["StatsSample"]["properties"])
    assert schemas["StatsSummary"]["properties"]["rtt_ms"]["properties"].keys() == {
        "median",
        "worst",
    }


@pytest.mark.django_db
def test_the_stream_page_asks_for_stats_and_has_room_for_the_charts(client):
    html = client.get("/rtc/echo/").content.decode()
    assert 'id="rtc-stats"' in html and 'data-chart="rtt"' in html
    assert '"serverStats": true' in html
    with override_settings(RTCSTREAM={**settings.RTCSTREAM, "STATS_INTERVAL": 0}):
        assert '"serverStats": false' in client.get("/rtc/echo/").content.decode()
