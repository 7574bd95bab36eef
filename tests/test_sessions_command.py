"""``manage.py rtcstream_sessions``: list, purge and reap session records."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from django_rtcstream.models import StreamSession
from tests.settings import RTCSTREAM

pytestmark = pytest.mark.django_db


def make(webrtc_id, state, *, age=timedelta(0), closed_ago=None, heartbeat_ago=None, **fields):
    """A row created ``age`` ago, closed ``closed_ago`` ago (finished rows)."""
    row = StreamSession.objects.create(webrtc_id=webrtc_id, stream="echo", state=state, **fields)
    now = timezone.now()
    StreamSession.objects.filter(pk=row.pk).update(
        created_at=now - age,
        closed_at=None if closed_ago is None else now - closed_ago,
        heartbeat_at=None if heartbeat_ago is None else now - heartbeat_ago,
    )
    return row


def run(*args):
    out = StringIO()
    call_command("rtcstream_sessions", *args, stdout=out)
    return out.getvalue()


def ids():
    return set(StreamSession.objects.values_list("webrtc_id", flat=True))


def states():
    return dict(StreamSession.objects.values_list("webrtc_id", "state"))


def test_lists_live_sessions_as_a_table():
    make("talking", "connected", worker="host-a:11", age=timedelta(minutes=2, seconds=5))
    make("dialing", "connecting", worker="host-b:22")
    make("gone", "closed", closed_ago=timedelta(hours=1), age=timedelta(hours=2))
    lines = run().splitlines()
    assert lines[0].split() == ["stream", "webrtc_id", "state", "worker", "age"]
    assert sorted(line.split()[1] for line in lines[1:]) == ["dialing", "talking"]
    talking = next(line for line in lines if "talking" in line)
    assert talking.split()[:5] == ["echo", "talking", "connected", "host-a:11", "2m"]
    assert "gone" in run("--all")


def test_says_so_when_there_is_nothing_to_list():
    assert run().strip() == "No live sessions."
    assert run("--all").strip() == "No sessions."


def test_purge_deletes_only_old_finished_sessions():
    make("old-closed", "closed", age=timedelta(days=41), closed_ago=timedelta(days=40))
    make("old-failed", "failed", age=timedelta(days=31), closed_ago=timedelta(days=31))
    make("recent-closed", "closed", age=timedelta(days=41), closed_ago=timedelta(days=5))
    make("old-live", "connected", age=timedelta(days=90))
    make("old-unclosed", "failed", age=timedelta(days=60))
    assert run("--purge").strip() == "Deleted 3 finished session(s) older than 30 day(s)."
    assert ids() == {"recent-closed", "old-live"}
    assert "Deleted 1 " in run("--purge", "--older-than", "3")
    assert ids() == {"old-live"}


def test_purge_default_follows_the_retention_setting():
    make("week-old", "closed", age=timedelta(days=8), closed_ago=timedelta(days=8))
    with override_settings(RTCSTREAM={**RTCSTREAM, "SESSION_RETENTION_DAYS": 7}):
        assert "older than 7 day(s)" in run("--purge")
    assert ids() == set()


def test_reap_fails_live_sessions_of_dead_workers():
    make("stale", "connected", heartbeat_ago=timedelta(minutes=5))
    make("stale-new", "new", heartbeat_ago=timedelta(minutes=5))
    make("fresh", "connected", heartbeat_ago=timedelta(seconds=1))
    make("ended", "closed", heartbeat_ago=timedelta(minutes=5), closed_ago=timedelta(minutes=5))
    lines = run("--reap").splitlines()
    assert sorted(lines[:-1]) == ["stale", "stale-new"]
    assert lines[-1] == "Reaped 2 session(s) of dead workers."
    assert states() == {
        "stale": "failed",
        "stale-new": "failed",
        "fresh": "connected",
        "ended": "closed",
    }
    assert StreamSession.objects.get(webrtc_id="stale").close_reason == "worker_lost"
    assert run("--reap").strip() == "Reaped 0 session(s) of dead workers."


def test_reap_uses_the_lease_setting():
    make("quiet", "connected", heartbeat_ago=timedelta(seconds=20))
    assert "Reaped 0" in run("--reap")
    with override_settings(RTCSTREAM={**RTCSTREAM, "SESSION_LEASE": 10}):
        assert "quiet" in run("--reap")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--purge", "--reap"], "cannot be combined"),
        (["--all", "--purge"], "cannot be combined"),
        (["--older-than", "3"], "only applies to --purge"),
        (["--purge", "--older-than", "-1"], "0 or more days"),
        (["--purge", "--older-than", "soon"], "invalid int value"),
    ],
)
def test_bad_arguments_are_refused_clearly(args, message):
    make("kept", "closed", age=timedelta(days=90), closed_ago=timedelta(days=90))
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert ids() == {"kept"}


def test_bad_arguments_exit_non_zero_from_the_command_line():
    import subprocess
    import sys
    from pathlib import Path

    result = subprocess.run(
        [sys.executable, "-m", "django", "rtcstream_sessions", "--older-than", "3"],
        capture_output=True,
        text=True,
        env={"DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": ".", "PATH": ""},
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    assert result.returncode != 0
    assert "--older-than only applies to --purge" in result.stderr
