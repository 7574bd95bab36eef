"""A Redis outage: media goes on, the control plane answers 503, then recovers by itself.

Two uvicorn workers on PostgreSQL (DATABASE_URL) and a Redis of this test's own
(a ``redis-server`` started on a free port, without persistence, so a restart
forgets every channel and group, as a real crash of an in-memory Redis does).
The test kills that Redis for ~8 s and starts it again on the same port.

The tests at the end need no services: the hooks' answers when the channel layer
raises, and the session's output publishing when it cannot reach the broker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pytest

from django_rtcstream.client import StreamClient, ToneAudioTrack
from tests.conftest import free_port
from tests.workers import fresh_database, pg_connect, start_worker, stop_worker

REDIS_URL = os.environ.get("REDIS_URL")
DATABASE_URL = os.environ.get("DATABASE_URL")
REDIS_SERVER = shutil.which("redis-server")
OUTAGE = 8.0  # seconds Redis stays down

if os.environ.get("CI") and REDIS_URL and DATABASE_URL and not REDIS_SERVER:
    raise RuntimeError("CI must install redis-server for tests/test_broker_outage.py")
needs_services = pytest.mark.skipif(
    not (REDIS_URL and DATABASE_URL and REDIS_SERVER),
    reason="REDIS_URL and DATABASE_URL are not set (or redis-server is not installed)",
)


# -- the services --------------------------------------------------------------------------


class RedisServer:
    """A throw-away redis-server on a fixed port, which the test may kill and restart."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="rtcstream-redis-")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not self.ping():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def ping(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def outage_cluster():
    """Our Redis, a fresh PostgreSQL database, and workers A and B on both."""
    redis = RedisServer()
    logs = tempfile.mkdtemp(prefix="rtcstream-outage-logs-")
    cluster = {"redis": redis, "workers": {}, "logs": logs}
    try:
        redis.start()
        database = fresh_database("rtcstream_bo", "tests.settings_outage", REDIS_URL=redis.url)
        with database as (name, env):
            cluster["name"], cluster["env"] = name, env
            try:
                for worker in ("A", "B"):
                    spawn_worker(cluster, worker)
                yield cluster
            finally:
                for _, process, log in cluster["workers"].values():
                    stop_worker(process)
                    log.close()
    finally:
        redis.stop()
        shutil.rmtree(logs, ignore_errors=True)


def spawn_worker(cluster, worker):
    log = open(os.path.join(cluster["logs"], f"{worker}.log"), "w+")
    url, process = start_worker(cluster["env"], worker, log)
    cluster["workers"][worker] = (url, process, log)
    return url


def worker_log(cluster, worker) -> str:
    with open(os.path.join(cluster["logs"], f"{worker}.log")) as f:
        return f.read()


def base(cluster, worker):
    return cluster["workers"][worker][0] + "/rtc/"


def session_row(cluster, webrtc_id):
    with pg_connect(cluster["name"]) as db:
        return db.execute(
            "SELECT state, close_reason FROM django_rtcstream_streamsession WHERE webrtc_id = %s",
            (webrtc_id,),
        ).fetchone()


# -- HTTP helpers ------------------------------------------------------------------------


def post(url, data, timeout=10.0):
    """(status, JSON body, headers) of a POST; never raises for an HTTP error status."""
    request = urllib.request.Request(
        url,
        data=json.dumps(data).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        return exc.code, body, dict(exc.headers)


def get_status(url, timeout=10.0):
    """(status, JSON body or None, headers) of a GET that is expected to fail."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, None, dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw), dict(exc.headers)
        except ValueError:
            return exc.code, {"meta": {"error": raw.decode(errors="replace")}}, dict(exc.headers)


class SSEReader:
    """Reads an SSE hook on a thread; ``events`` gets ``(event, data)`` pairs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: queue.Queue = queue.Queue()
        self.response = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            with urllib.request.urlopen(self.url, timeout=60) as response:
                self.response = response
                event = None
                for raw in response:
                    line = raw.decode().strip()
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        self.events.put((event, json.loads(line[6:])))
                        event = None
        except Exception as exc:  # the test reads the queue, and sees this as the last item
            self.events.put(("error", repr(exc)))
        self.events.put(("closed", None))

    async def next_output(self, timeout: float) -> list:
        """The next output's data; fails if the stream ends or nothing comes in time."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no output on {self.url} within {timeout:g} s")
            try:
                event, data = await asyncio.to_thread(self.events.get, True, min(left, 0.5))
            except queue.Empty:
                continue
            if event == "output":
                return data
            raise AssertionError(f"SSE stream {self.url} ended: {event} {data}")

    async def output_where(self, predicate, timeout: float) -> list:
        deadline = time.monotonic() + timeout
        while True:
            data = await self.next_output(max(0.1, deadline - time.monotonic()))
            if predicate(data):
                return data

    async def next_event(self, timeout: float):
        return await asyncio.to_thread(self.events.get, True, timeout)

    def close(self) -> None:
        response = self.response
        if response is not None:
            try:
                response.fp.raw._sock.shutdown(2)  # wake the reading thread
            except Exception:
                pass
        self.thread.join(5)


async def until(check, timeout: float, what: str, interval: float = 0.2):
    """Call ``check`` (a blocking function, on a thread) until it returns something true."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(check)
        if last and last[0]:
            return last[1]
        await asyncio.sleep(interval)
    raise AssertionError(f"{what} not within {timeout:g} s; last: {last}")


# -- the outage ------------------------------------------------------------------------------


@needs_services
@pytest.mark.media
@pytest.mark.timeout(150)
async def test_a_redis_outage_is_survived_by_media_and_the_control_plane(outage_cluster):
    cluster, redis = outage_cluster, outage_cluster["redis"]
    a, b = base(cluster, "A"), base(cluster, "B")
    client = StreamClient(
        a, "echo-report", audio=ToneAudioTrack(), ice_host_addresses=["127.0.0.1"]
    )
    await client.connect()
    sse = fresh = None
    try:
        webrtc_id, token = client.webrtc_id, client.token
        outputs_url = f"{b}echo-report/outputs?webrtc_id={webrtc_id}&token={token}"
        sse = SSEReader(outputs_url)
        first = await sse.next_output(10)
        assert first[1] == 1.0

        def input_via(worker, gain):
            return post(
                f"{base(cluster, worker)}echo-report/input",
                {"webrtc_id": webrtc_id, "token": token, "gain": gain},
            )

        # -- Redis goes away ----------------------------------------------------------------
        redis.kill()
        down_at = time.monotonic()
        audio_at_kill = client.received["audio"]

        # Through B the input needs the broker: 503 with a clear body, soon, never a 500.
        status, body, headers = await until(
            lambda: (lambda r: (r[0] != 200, r))(input_via("B", 0.5)), 6, "input hook refusal"
        )
        assert status == 503, (status, body)
        assert body["status"] == "failed" and body["meta"]["error"] == "broker_unavailable"
        assert "channel layer" in body["meta"]["message"]
        assert int(headers["Retry-After"]) >= 1
        # The SSE hook and a hang-up through B refuse the same way.
        status, body, headers = await asyncio.to_thread(get_status, outputs_url)
        assert (
            status == 503
            and body["meta"]["error"] == "broker_unavailable"
            and "Retry-After" in headers
        )
        status, body, headers = await asyncio.to_thread(
            post,
            f"{b}echo-report/webrtc/offer",
            {"type": "close", "webrtc_id": webrtc_id, "token": token},
        )
        assert (
            status == 503
            and body["meta"]["error"] == "broker_unavailable"
            and "Retry-After" in headers
        )
        # On A, the session's own worker, inputs need no broker at all.
        status, body, _ = await asyncio.to_thread(input_via, "A", 0.5)
        assert (status, body["inputs"]) == (200, {"gain": 0.5}), body

        # Media keeps flowing through the whole outage, and the session stays up.
        while time.monotonic() - down_at < OUTAGE:
            seen = client.received["audio"]
            await asyncio.sleep(1.0)
            assert client.received["audio"] >= seen + 30, "audio stalled during the outage"
        assert client.received["audio"] - audio_at_kill >= 40 * OUTAGE
        assert session_row(cluster, webrtc_id) == ("connected", "")

        # -- Redis comes back (empty: no channel, no group survived) --------------------------
        await asyncio.to_thread(redis.start)
        back_at = time.monotonic()

        # Inputs through B work again, and reach the handler: the outputs carry the gain.
        def b_input_ok():
            status, body, _ = input_via("B", 0.25)
            assert status in (200, 503), (status, body)  # never 404 or 500
            return status == 200, body

        body = await until(b_input_ok, 20, "input hook through B after the outage")
        assert body["inputs"] == {"gain": 0.25}
        # The existing subscriber hears outputs again (it re-joined the output group).
        latest = await sse.output_where(lambda data: data[1] == 0.25, 15)
        assert latest[0] > first[0]
        status, body, _ = await asyncio.to_thread(input_via, "A", 0.75)
        assert (status, body["inputs"]) == (200, {"gain": 0.75}), body
        # A fresh subscriber gets outputs too.
        fresh = SSEReader(outputs_url)
        assert (await fresh.output_where(lambda data: data[1] == 0.75, 10))[1] == 0.75
        assert (await sse.output_where(lambda data: data[1] == 0.75, 10))[1] == 0.75
        recovered = time.monotonic() - back_at
        assert recovered < 20, recovered
        assert session_row(cluster, webrtc_id) == ("connected", "")

        # A hang-up through B reaches A; both subscribers get the end.
        status, body, _ = await asyncio.to_thread(
            post,
            f"{b}echo-report/webrtc/offer",
            {"type": "close", "webrtc_id": webrtc_id, "token": token},
        )
        assert status == 200, body
        await until(
            lambda: (session_row(cluster, webrtc_id)[0] == "closed", True), 10, "the hang-up"
        )
        assert session_row(cluster, webrtc_id) == ("closed", "client_hangup")
        for reader in (sse, fresh):
            while (event := await reader.next_event(10))[0] == "output":
                pass
            assert event == ("end", {"webrtc_id": webrtc_id})

        # One warning per outage for the dropped outputs, not one per output; no handler error.
        log_a = worker_log(cluster, "A")
        assert "Handler error" not in log_a and "Traceback" not in log_a, log_a[-3000:]
        assert "Traceback" not in worker_log(cluster, "B")
        assert log_a.count(f"Outputs of session {webrtc_id} cannot reach the channel layer") == 1, (
            log_a[-3000:]
        )
    except BaseException:
        for worker in ("A", "B"):
            print(f"--- worker {worker} log ---\n{worker_log(cluster, worker)[-6000:]}")
        raise
    finally:
        for reader in (sse, fresh):
            if reader is not None:
                reader.close()
        await client.close()


@needs_services
@pytest.mark.media
@pytest.mark.timeout(150)
async def test_a_hung_redis_stalls_no_media_and_reaps_no_live_session(outage_cluster):
    """Redis stopped (SIGSTOP): every call to it hangs instead of failing at once.

    Before, a worker that reaped a dead worker's session waited in its heartbeat for
    the end marker to reach the hung broker; its own sessions' leases ran out, the
    other worker reaped them (``worker_lost``) while their media still flowed, and
    their hooks answered 404 on every worker, for good.
    """
    cluster, redis = outage_cluster, outage_cluster["redis"]
    a, b = base(cluster, "A"), base(cluster, "B")
    on_a = StreamClient(a, "echo-report", audio=ToneAudioTrack(), ice_host_addresses=["127.0.0.1"])
    on_b = StreamClient(b, "echo", audio=ToneAudioTrack(), ice_host_addresses=["127.0.0.1"])
    await on_a.connect()
    await on_b.connect()
    sse = None
    stopped = False
    try:
        sse = SSEReader(f"{b}echo-report/outputs?webrtc_id={on_a.webrtc_id}&token={on_a.token}")
        await sse.next_output(10)
        # A session of a worker that died: whichever worker reaps it sends its end marker.
        with pg_connect(cluster["name"]) as db:
            db.execute(
                "INSERT INTO django_rtcstream_streamsession (id, webrtc_id, stream, channel, "
                "state, worker, inputs, created_at, close_reason, heartbeat_at, token_hash, "
                "call_sid, frames_in, frames_out, messages_out, stuck_calls, turns, interruptions) VALUES "
                "(gen_random_uuid(), 'ghost', 'echo', 'webrtc', 'connected', 'dead', '[]', now(), "
                "'', now() - interval '1 minute', '', '', 0, 0, 0, 0, 0, 0)"
            )
        redis.process.send_signal(signal.SIGSTOP)
        stopped = True
        stopped_at = time.monotonic()

        # A request that needs the broker is refused within its timeout, not left hanging.
        started = time.monotonic()
        status, body, headers = await asyncio.to_thread(
            post,
            f"{b}echo-report/input",
            {"webrtc_id": on_a.webrtc_id, "token": on_a.token, "gain": 0.5},
            15,
        )
        assert status == 503 and body["meta"]["error"] == "broker_unavailable", (status, body)
        assert time.monotonic() - started < 6 and "Retry-After" in headers
        # Media flows on both workers for three leases and more.
        while time.monotonic() - stopped_at < 7:
            seen = on_a.received["audio"], on_b.received["audio"]
            await asyncio.sleep(1.0)
            assert on_a.received["audio"] >= seen[0] + 30, "audio on A stalled"
            assert on_b.received["audio"] >= seen[1] + 30, "audio on B stalled"
        assert session_row(cluster, "ghost") == ("failed", "worker_lost")
        assert session_row(cluster, on_a.webrtc_id) == ("connected", "")
        assert session_row(cluster, on_b.webrtc_id) == ("connected", "")

        redis.process.send_signal(signal.SIGCONT)
        stopped = False
        # Inputs through the other worker work again for both sessions.
        for client, worker, stream in ((on_a, "B", "echo-report"), (on_b, "A", "echo")):

            def input_ok(client=client, worker=worker, stream=stream):
                status, body, _ = post(
                    f"{base(cluster, worker)}{stream}/input",
                    {"webrtc_id": client.webrtc_id, "token": client.token, "gain": 0.25},
                )
                assert status in (200, 503), (status, body)
                return status == 200, body

            assert (await until(input_ok, 20, f"input through {worker}"))["inputs"] == {
                "gain": 0.25
            }
        await sse.output_where(lambda data: data[1] == 0.25, 15)
        log_a, log_b = worker_log(cluster, "A"), worker_log(cluster, "B")
        assert "was reaped while it ran" not in log_a + log_b  # no lease ran out at all
        assert "Traceback" not in log_a + log_b, (log_a + log_b)[-3000:]
    except BaseException:
        for worker in ("A", "B"):
            print(f"--- worker {worker} log ---\n{worker_log(cluster, worker)[-6000:]}")
        raise
    finally:
        if stopped:
            redis.process.send_signal(signal.SIGCONT)
        if sse is not None:
            sse.close()
        await on_a.close()
        await on_b.close()


# -- without services: a channel layer that raises ------------------------------------------


class BrokerDown:
    """Stands in for the channel layer's connection errors (redis-py's own class)."""

    def __init__(self, layer) -> None:
        self.layer = layer
        self.calls = 0

    def error(self):
        from redis.exceptions import ConnectionError as RedisConnectionError

        self.calls += 1
        return RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    async def send(self, channel, message):
        raise self.error()

    async def group_add(self, group, channel):
        raise self.error()

    async def group_send(self, group, message):
        raise self.error()

    async def receive(self, channel):
        raise self.error()

    def __getattr__(self, name):
        return getattr(self.layer, name)


@pytest.fixture
def live_record(transactional_db):
    """A live session record owned by "another worker" (no session in this process)."""
    from django_rtcstream.tokens import new_token
    from django_rtcstream.models import StreamSession

    token, token_hash = new_token()
    record = StreamSession.objects.create(
        stream="echo",
        webrtc_id="elsewhere",
        state="connected",
        worker="other",
        token_hash=token_hash,
    )
    return record, token


@pytest.fixture
def broker_down(monkeypatch):
    from django_rtcstream.sessions import bus

    down = BrokerDown(bus.layer())
    monkeypatch.setattr(bus, "layer", lambda: down)
    return down


def assert_broker_unavailable(response):
    assert response.status_code == 503, response.content
    body = json.loads(response.content)
    assert body["status"] == "failed" and body["meta"]["error"] == "broker_unavailable"
    assert "channel layer" in body["meta"]["message"]
    assert response.headers["Retry-After"] == "2"


def test_hooks_answer_503_with_retry_after_when_the_channel_layer_is_away(live_record, broker_down):
    from django.contrib.auth.models import User
    from django.test import Client
    from rest_framework.test import APIClient

    record, token = live_record
    client = Client()
    assert_broker_unavailable(
        client.post(
            "/rtc/echo/input",
            {"webrtc_id": "elsewhere", "token": token, "gain": 0.5},
            content_type="application/json",
        )
    )
    assert_broker_unavailable(
        client.get("/rtc/echo/outputs", {"webrtc_id": "elsewhere", "token": token})
    )
    assert_broker_unavailable(
        client.post(
            "/rtc/echo/webrtc/offer",
            {"type": "close", "webrtc_id": "elsewhere", "token": token},
            content_type="application/json",
        )
    )
    staff = APIClient()
    staff.force_authenticate(User.objects.create_user("staff", is_staff=True))
    assert_broker_unavailable(staff.post(f"/rtc/sessions/{record.pk}/close/"))
    assert broker_down.calls == 4
    record.refresh_from_db()
    assert record.state == "connected"  # nothing happened to the session


@pytest.mark.django_db(transaction=True)
@pytest.mark.media
async def test_outputs_wait_out_a_broker_outage_and_the_session_goes_on(
    rtc_url, monkeypatch, caplog
):
    """Publishing fails for a while: the handler and media go on, the newest outputs are
    kept and published in order once the broker is back, one warning says so."""
    from django_rtcstream.handlers import AdditionalOutputs
    from django_rtcstream.registry import get_stream
    from django_rtcstream.sessions import bus
    from django_rtcstream.sessions.manager import local_session
    from tests.media import collect

    stream = get_stream("echo")  # audio back, so the media can be watched
    layer = bus.layer()
    real_group_send = layer.group_send
    refused = []

    async def group_send(group, message):
        if refused is not None and message["type"] == "rtc.output":
            refused.append(message)
            raise BrokerDown(layer).error()
        return await real_group_send(group, message)

    caplog.set_level(logging.WARNING, "django_rtcstream")
    async with StreamClient(rtc_url, "echo", audio=ToneAudioTrack()) as client:
        session = local_session(client.webrtc_id)
        outputs = stream.output_stream(client.webrtc_id).__aiter__()
        first = asyncio.ensure_future(outputs.__anext__())
        await asyncio.sleep(0.2)  # subscribed
        monkeypatch.setattr(layer, "group_send", group_send)
        for n in range(1, 41):  # more than the session keeps
            session.outbox.put(AdditionalOutputs(n))
        await collect(client.audio_frames, 25)  # media meanwhile
        assert len(refused) >= 1 and not session.ended
        refused = None  # the broker is back
        got = [(await asyncio.wait_for(first, 5)).args[0]]
        while len(got) < 32:
            got.append((await asyncio.wait_for(outputs.__anext__(), 5)).args[0])
        assert got == list(range(9, 41))  # the newest 32, in order
        await outputs.aclose()
    warnings = [
        r.getMessage() for r in caplog.records if "cannot reach the channel layer" in r.getMessage()
    ]
    assert len(warnings) == 1, warnings
