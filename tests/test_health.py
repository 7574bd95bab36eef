"""Health endpoints: live answers while the loop does; ready says what is missing."""

from __future__ import annotations

import pytest

from django_rtcstream.client import http_json
from django_rtcstream.sessions import records, shutdown

pytestmark = [pytest.mark.django_db(transaction=True)]


async def test_live_and_ready_answer_on_a_healthy_worker(rtc_url):
    assert await http_json(f"{rtc_url}health/live") == (200, {"status": "ok"})
    status, body = await http_json(f"{rtc_url}health/ready")
    assert (status, body) == (
        200,
        {"status": "ready", "checks": {"database": "ok", "channel_layer": "ok", "draining": False}},
    )


def _break_records_database():
    """On the records thread: close its connection and point it where no database is."""
    from django.db import connection

    saved = connection.settings_dict["NAME"]
    connection.close()
    connection.settings_dict["NAME"] = "/nonexistent-dir/rtcstream.sqlite3"
    return saved


def _restore_records_database(name):
    from django.db import connection

    connection.close()
    connection.settings_dict["NAME"] = name


async def test_ready_answers_503_while_the_database_is_unreachable(rtc_url):
    saved = await records.submit(_break_records_database)
    try:
        status, body = await http_json(f"{rtc_url}health/ready")
        assert status == 503 and body["status"] == "unavailable"
        assert body["checks"]["database"].startswith("unreachable: ")
        assert body["checks"]["channel_layer"] == "ok"
        assert (await http_json(f"{rtc_url}health/live"))[0] == 200  # the loop still answers
    finally:
        await records.submit(_restore_records_database, saved)
    assert (await http_json(f"{rtc_url}health/ready"))[0] == 200


async def test_ready_answers_503_while_the_worker_drains(rtc_url, monkeypatch):
    monkeypatch.setattr(shutdown, "_begun", True)
    status, body = await http_json(f"{rtc_url}health/ready")
    assert status == 503 and body["checks"]["draining"] is True
