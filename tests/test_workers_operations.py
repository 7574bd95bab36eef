"""Metrics and drains across two real worker processes (uvicorn) on PostgreSQL and Redis.

- ``<prefix>/metrics`` on either worker sums both (prometheus_client's multiprocess
  mode, one ``PROMETHEUS_MULTIPROC_DIR`` made empty for the test), read by
  prometheus_client's own parser, with the counters moving as sessions start and end;
  a worker that exits takes its live gauges with it, its counters stay.
- ``manage.py rtcstream_drain A`` drains worker A only, and ``--resume`` undoes it.
- A Python client given both workers' URLs moves to B when A drains (SIGTERM).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from django_rtcstream.client import SignalingFailed, StreamClient, ToneAudioTrack, http_json
from tests.media import collect
from tests.test_metrics import get, parse, value
from tests.workers import fresh_database, rows, start_worker, stop_worker

REDIS_URL = os.environ.get("REDIS_URL")
DATABASE_URL = os.environ.get("DATABASE_URL")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "two-worker-scraper-token"

if not (REDIS_URL and DATABASE_URL):
    if os.environ.get("CI"):
        raise RuntimeError("CI must set REDIS_URL and DATABASE_URL for the multi-worker tests")
    pytest.skip("REDIS_URL and DATABASE_URL are not set", allow_module_level=True)

pytestmark = [pytest.mark.media]


@pytest.fixture(scope="module")
def database():
    """A fresh PostgreSQL database, migrated; the environment of its workers."""
    with fresh_database("rtcstream_ops", RTCSTREAM_TEST_METRICS_TOKEN=TOKEN) as (name, env):
        yield {"name": name, "env": env}


@pytest.fixture
def workers(database, tmp_path):
    """Workers A and B with their own empty metrics directory; stopped afterwards."""
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    env = {
        **database["env"],
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "RTCSTREAM_TEST_DRAIN_TIMEOUT": "10",
    }
    started = {}
    try:
        for name in ("A", "B"):
            url, process = start_worker(env, name)
            started[name] = (f"{url}/rtc/", process)
        yield {"env": env, "db": database["name"], **started}
    finally:
        for _, process in started.values():
            stop_worker(process)


def record(db, webrtc_id):
    [(worker, state, reason)] = rows(
        db,
        "SELECT worker, state, close_reason FROM django_rtcstream_streamsession "
        "WHERE webrtc_id = %s",
        webrtc_id,
    )
    return worker, state, reason


async def scrape(base):
    status, _, body = await asyncio.to_thread(
        get, f"{base}metrics", {"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 200, body
    return parse(body)


async def scrape_until(base, predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        samples = await scrape(base)
        if predicate(samples):
            return samples
        assert time.monotonic() < deadline, f"the metrics did not get there: {samples}"
        await asyncio.sleep(0.2)


async def wait_until(predicate, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        assert time.monotonic() < deadline, f"{what} not met in time"
        await asyncio.sleep(0.1)


def echo_client(base, **kwargs):
    return StreamClient(
        base, "echo", audio=ToneAudioTrack(), ice_host_addresses=["127.0.0.1"], **kwargs
    )


def manage(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_metrics_on_either_worker_count_the_sessions_of_both(workers):
    a, b = workers["A"][0], workers["B"][0]
    before = await scrape(a)
    started = value(before, "rtcstream_sessions_started_total", stream="echo")
    ended = value(before, "rtcstream_sessions_ended_total", stream="echo", reason="client_hangup")
    frames = value(before, "rtcstream_frames_total", stream="echo", direction="in")

    async with echo_client(a) as on_a, echo_client(b) as on_b:
        await collect(on_a.audio_frames, 10)
        await collect(on_b.audio_frames, 10)
        assert record(workers["db"], on_a.webrtc_id)[0] == "A"
        assert record(workers["db"], on_b.webrtc_id)[0] == "B"
        for base in (a, b):  # the same sums, whichever worker answers
            live = await scrape_until(
                base,
                lambda s: (
                    value(s, "rtcstream_sessions_live", stream="echo", transport="webrtc") == 2
                    and value(s, "rtcstream_sessions_started_total", stream="echo") == started + 2
                ),
            )
            assert value(live, "rtcstream_frames_total", stream="echo", direction="in") > frames
            for worker in ("A", "B"):  # per-worker gauges, from each worker's own files
                assert ("rtcstream_handler_pool_threads", frozenset({("worker", worker)})) in live
                assert value(live, "rtcstream_event_loop_lag_max_seconds", worker=worker) < 5

    after = await scrape_until(
        b,
        lambda s: (
            value(s, "rtcstream_sessions_ended_total", stream="echo", reason="client_hangup")
            == ended + 2
            and value(s, "rtcstream_sessions_live", stream="echo") == 0
        ),
    )
    assert value(after, "rtcstream_frames_total", stream="echo", direction="in") > frames + 20

    # B exits: its live gauges go (mark_process_dead), what it counted stays.
    stop_worker(workers["B"][1])
    gone = await scrape(a)
    assert ("rtcstream_handler_pool_threads", frozenset({("worker", "B")})) not in gone
    assert ("rtcstream_handler_pool_threads", frozenset({("worker", "A")})) in gone
    assert value(gone, "rtcstream_sessions_started_total", stream="echo") == started + 2


async def test_rtcstream_drain_drains_the_named_worker_and_resume_undoes_it(workers):
    a, b = workers["A"][0], workers["B"][0]
    db, env = workers["db"], workers["env"]
    async with echo_client(a, reconnect_on_drain=False) as on_a, echo_client(b) as on_b:
        await collect(on_a.audio_frames, 5)
        await collect(on_b.audio_frames, 5)

        unknown = await asyncio.to_thread(manage, env, "rtcstream_drain", "Z")
        assert unknown.returncode != 0
        assert "No worker named 'Z' answered" in unknown.stderr, unknown.stderr
        assert "Workers with live sessions: A, B." in unknown.stderr, unknown.stderr

        done = await asyncio.to_thread(manage, env, "rtcstream_drain", "A", "--timeout", "3")
        assert done.returncode == 0, done.stderr
        assert "Worker A drains: 1 live session(s)" in done.stdout, done.stdout
        drained = await on_a.next_message("draining", timeout=5)
        assert 0 < drained["data"]["seconds"] <= 3

        assert (await http_json(f"{a}health/ready"))[0] == 503
        assert (await http_json(f"{b}health/ready"))[0] == 200
        with pytest.raises(SignalingFailed) as refused:
            await echo_client(a).connect()
        assert (refused.value.status, refused.value.code) == (503, "draining")

        # A closes its session once the grace is over, and keeps running; B is untouched.
        await wait_until(lambda: record(db, on_a.webrtc_id)[1] == "closed", what="A's close")
        assert record(db, on_a.webrtc_id) == ("A", "closed", "server_shutdown")
        assert workers["A"][1].poll() is None
        assert record(db, on_b.webrtc_id) == ("B", "connected", "")
        assert await collect(on_b.audio_frames, 5)
        assert all(m.get("type") != "draining" for m in list(on_b.messages._queue))

        resumed = await asyncio.to_thread(manage, env, "rtcstream_drain", "A", "--resume")
        assert resumed.returncode == 0 and "takes sessions again" in resumed.stdout, resumed
        async with echo_client(a) as again:
            assert record(db, again.webrtc_id)[0] == "A"
        assert (await http_json(f"{a}health/ready"))[0] == 200


async def test_the_python_client_moves_to_the_other_worker_when_its_worker_drains(workers):
    (a, process_a), b = workers["A"], workers["B"][0]
    db = workers["db"]
    async with echo_client([a, b]) as client:
        await collect(client.audio_frames, 10)
        first = client.webrtc_id
        assert record(db, first)[0] == "A"

        process_a.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        moved = await client.next_message("reconnected", timeout=10)
        assert moved["data"]["previous"] == first and moved["data"]["base_url"] == b
        assert client.webrtc_id != first and record(db, client.webrtc_id)[0] == "B"
        assert client.reconnects == 1

        # The old session was hung up once the new one was connected: A had nothing
        # left to wait for and exited well before its 10 s drain timeout.
        await asyncio.to_thread(process_a.wait, 15)
        assert time.monotonic() - signalled < 8
        assert record(db, first) == ("A", "closed", "client_hangup")
        # Media flows from B.
        received = client.received["audio"]
        await wait_until(lambda: client.received["audio"] > received + 25, what="audio from B")
        assert record(db, client.webrtc_id)[1] == "connected"


async def test_rtcstream_drain_wait_returns_once_the_workers_sessions_are_gone(workers):
    a, db, env = workers["A"][0], workers["db"], workers["env"]
    async with echo_client(a, reconnect_on_drain=False) as client:
        await collect(client.audio_frames, 5)
        done = await asyncio.to_thread(
            manage, env, "rtcstream_drain", "A", "--timeout", "1", "--wait"
        )
        assert done.returncode == 0, done.stderr
        assert "Worker A has no live session left." in done.stdout, done.stdout
        assert record(db, client.webrtc_id) == ("A", "closed", "server_shutdown")
