"""Faults of a worker and of the database, with two workers on PostgreSQL and Redis.

Real uvicorn processes serve the test project (tests/settings_outage.py: the
multi-worker settings plus a stream that publishes outputs) on the shared Redis
(REDIS_URL) and a fresh PostgreSQL database of each test (DATABASE_URL), with a
short heartbeat and lease (RTCSTREAM_TEST_HEARTBEAT, RTCSTREAM_TEST_LEASE).

- A worker killed with SIGKILL: the survivor reaps its sessions within the lease,
  frees their slots and ends their SSE streams.
- The database unreachable for the workers for a while (never the shared server
  itself: the workers reach PostgreSQL through a TCP proxy of this test's own,
  which the test cuts, closing every connection and refusing new ones, then
  restores): admission and the hooks answer 503 ``database_unavailable``, running
  sessions go on streaming, and the records catch up once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import urlsplit, urlunsplit

import pytest

from django_rtcstream.client import SignalingFailed, StreamClient, ToneAudioTrack
from tests.conftest import free_port
from tests.media import collect
from tests.workers import fresh_database, pg_connect, start_worker, stop_worker

REDIS_URL = os.environ.get("REDIS_URL")
DATABASE_URL = os.environ.get("DATABASE_URL")

if not (REDIS_URL and DATABASE_URL):
    if os.environ.get("CI"):
        raise RuntimeError("CI must set REDIS_URL and DATABASE_URL for the worker fault tests")
    pytest.skip("REDIS_URL and DATABASE_URL are not set", allow_module_level=True)

from tests.test_broker_outage import SSEReader, get_status, post, until  # noqa: E402

pytestmark = [pytest.mark.media]

ICE = ["127.0.0.1"]


# -- a TCP proxy the test can cut ----------------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target``; ``cut()`` closes every connection and
    stops listening (new connections are refused), ``restore()`` listens again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.lock = threading.Lock()
        self.sockets: set[socket.socket] = set()
        self.listener: socket.socket | None = None
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        self.connections = 0  # accepted, over the proxy's life

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.2)
        self.listener, self.stopped = listener, threading.Event()
        self.thread = threading.Thread(
            target=self._accept, args=(listener, self.stopped), daemon=True, name="pg-proxy"
        )
        self.thread.start()

    def _accept(self, listener: socket.socket, stopped: threading.Event) -> None:
        while not stopped.is_set():
            try:
                client, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self.lock:
                if stopped.is_set():
                    client.close()
                    upstream.close()
                    return
                self.sockets.update((client, upstream))
                self.connections += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(src, dst), daemon=True, name="pg-proxy-pump"
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):  # wakes the other direction's pump
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            with self.lock:
                self.sockets.discard(src)
            src.close()

    def cut(self) -> None:
        self.stopped.set()
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        if self.thread is not None:
            self.thread.join(5)
        with self.lock:
            sockets, self.sockets = list(self.sockets), set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def restore(self) -> None:
        self.start()

    def refuses(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return True
        return False


# -- the workers ---------------------------------------------------------------------------


class Cluster:
    """A fresh database, migrated, and uvicorn workers on it (logs in files)."""

    def __init__(self, heartbeat: float, lease: float, proxy: bool) -> None:
        self.heartbeat, self.lease = heartbeat, lease
        self.logs = tempfile.mkdtemp(prefix="rtcstream-faults-logs-")
        self.workers: dict[str, tuple[str, subprocess.Popen, object]] = {}
        self.proxy: TcpProxy | None = None
        url = urlsplit(DATABASE_URL)
        worker_db = DATABASE_URL
        if proxy:
            self.proxy = TcpProxy((url.hostname or "127.0.0.1", url.port or 5432))
            netloc = url.netloc.rsplit("@", 1)
            host = f"127.0.0.1:{self.proxy.port}"
            worker_db = urlunsplit(
                url._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host)
            )
        self.worker_db = worker_db
        self.database = contextlib.ExitStack()  # dropped by stop()

    def start(self, *workers: str) -> None:
        if self.proxy is not None:
            self.proxy.start()
        self.name, self.env = self.database.enter_context(
            fresh_database(
                "rtcstream_wf",
                "tests.settings_outage",
                RTCSTREAM_TEST_HEARTBEAT=str(self.heartbeat),
                RTCSTREAM_TEST_LEASE=str(self.lease),
            )
        )
        self.worker_env = {**self.env, "DATABASE_URL": self.worker_db}
        for worker in workers:
            self.spawn(worker)

    def spawn(self, worker: str) -> None:
        log = open(os.path.join(self.logs, f"{worker}.log"), "w+")
        try:
            url, process = start_worker(self.worker_env, worker, log)
        except RuntimeError as exc:
            log.seek(0)
            raise RuntimeError(f"{exc}:\n{log.read()[-3000:]}") from None
        self.workers[worker] = (url, process, log)

    def base(self, worker: str) -> str:
        return self.workers[worker][0] + "/rtc/"

    def kill(self, worker: str) -> None:
        process = self.workers[worker][1]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def log(self, worker: str) -> str:
        with open(os.path.join(self.logs, f"{worker}.log")) as f:
            return f.read()

    def row(self, webrtc_id: str) -> dict | None:
        with pg_connect(self.name) as db:
            cursor = db.execute(
                "SELECT state, close_reason, heartbeat_at, frames_in, frames_out, worker, "
                "stats_summary FROM django_rtcstream_streamsession WHERE webrtc_id = %s "
                "ORDER BY created_at DESC",
                (webrtc_id,),
            )
            found = cursor.fetchone()
        if found is None:
            return None
        return dict(
            zip(
                (
                    "state",
                    "close_reason",
                    "heartbeat_at",
                    "frames_in",
                    "frames_out",
                    "worker",
                    "stats_summary",
                ),
                found,
            )
        )

    def print_logs(self) -> None:
        for worker in self.workers:
            print(f"--- worker {worker} log ---\n{self.log(worker)[-6000:]}")

    def stop(self) -> None:
        for _, process, log in self.workers.values():
            stop_worker(process)
            log.close()
        if self.proxy is not None:
            self.proxy.cut()
        self.database.close()
        shutil.rmtree(self.logs, ignore_errors=True)


@pytest.fixture
def make_cluster():
    clusters: list[Cluster] = []

    def make(*workers: str, heartbeat: float, lease: float, proxy: bool = False) -> Cluster:
        cluster = Cluster(heartbeat, lease, proxy)
        clusters.append(cluster)
        cluster.start(*workers)
        return cluster

    try:
        yield make
    finally:
        for cluster in clusters:
            cluster.stop()


async def next_event_where(reader: SSEReader, wanted, timeout: float):
    """The next SSE event (``(event, data)``) that ``wanted`` accepts; fails on an
    error, on the end of the stream or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no such event on {reader.url} within {timeout:g} s")
        try:
            event = await reader.next_event(min(left, 0.5))
        except Exception:  # queue.Empty
            continue
        if wanted(event):
            return event
        if event[0] in ("error", "closed"):
            raise AssertionError(f"SSE stream {reader.url} ended: {event}")


def assert_no_event_but_outputs(reader: SSEReader) -> int:
    """Drain what the reader got so far: only outputs; how many."""
    n = 0
    while not reader.events.empty():
        event = reader.events.get_nowait()
        assert event[0] == "output", f"SSE stream {reader.url}: unexpected {event}"
        n += 1
    return n


# -- a worker killed -------------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_a_killed_worker_is_reaped_within_the_lease_and_its_slot_and_streams_freed(
    make_cluster,
):
    heartbeat, lease = 1.0, 6.0
    cluster = make_cluster("A", "B", heartbeat=heartbeat, lease=lease)
    a, b = cluster.base("A"), cluster.base("B")
    client = StreamClient(a, "limited", audio=ToneAudioTrack(), ice_host_addresses=ICE)
    await client.connect()
    sse = again = None
    try:
        await collect(client.audio_frames, 3)
        assert cluster.row(client.webrtc_id)["state"] == "connected"
        sse = SSEReader(f"{b}limited/outputs?webrtc_id={client.webrtc_id}&token={client.token}")
        await until(lambda: (sse.response is not None, True), 10, "the SSE subscription on B")

        cluster.kill("A")
        killed = time.monotonic()
        await until(
            lambda: (cluster.row(client.webrtc_id)["state"] != "connected", True),
            lease + heartbeat + 5,
            "reaping of the killed worker's session",
        )
        reaped_after = time.monotonic() - killed
        row = cluster.row(client.webrtc_id)
        assert (row["state"], row["close_reason"]) == ("failed", "worker_lost")
        # Not before its lease ran out (less the beat it had not sent yet), and soon after.
        assert lease - heartbeat - 0.5 <= reaped_after <= lease + heartbeat + 3, reaped_after

        # The subscriber on B hears the end: B reaped the session and said so.
        event = await next_event_where(sse, lambda e: e[0] == "end", 5)
        assert event == ("end", {"webrtc_id": client.webrtc_id})
        # The slot is free: a new session on the limited stream is admitted through B.
        again = StreamClient(b, "limited", audio=ToneAudioTrack(), ice_host_addresses=ICE)
        await again.connect()
        await collect(again.audio_frames, 3)
        assert cluster.row(again.webrtc_id)["worker"] == "B"
        log_b = cluster.log("B")
        assert f"Reaped session {client.webrtc_id}" in log_b
        assert "Traceback" not in log_b, log_b[-3000:]
    except BaseException:
        cluster.print_logs()
        raise
    finally:
        if sse is not None:
            sse.close()
        await client.close()
        if again is not None:
            await again.close()


# -- the database unreachable -------------------------------------------------------------------

OUTAGE = 8.0  # seconds the database stays unreachable: more than two leases


async def offer_body(webrtc_id: str) -> tuple[dict, object]:
    """An audio offer (never answered: the test wants the server's refusal)."""
    from aiortc import RTCPeerConnection

    from django_rtcstream.media import ice

    ice.install_host_addresses(ICE)
    pc = RTCPeerConnection(ice.rtc_configuration([]))
    pc.addTrack(ToneAudioTrack())
    await pc.setLocalDescription(await pc.createOffer())
    return {"type": "offer", "sdp": pc.localDescription.sdp, "webrtc_id": webrtc_id}, pc


def assert_database_unavailable(status, body, headers) -> None:
    assert status == 503, (status, body)
    assert body["status"] == "failed" and body["meta"]["error"] == "database_unavailable", body
    assert "database" in body["meta"]["message"]
    assert int(headers["Retry-After"]) >= 1


@pytest.mark.timeout(180)
async def test_an_unreachable_database_refuses_admission_with_503_and_spares_running_sessions(
    make_cluster,
):
    heartbeat, lease = 0.5, 3.0
    cluster = make_cluster("A", "B", heartbeat=heartbeat, lease=lease, proxy=True)
    proxy = cluster.proxy
    a, b = cluster.base("A"), cluster.base("B")
    on_a = StreamClient(a, "echo-report", audio=ToneAudioTrack(), ice_host_addresses=ICE)
    on_b = StreamClient(b, "echo", audio=ToneAudioTrack(), ice_host_addresses=ICE)
    await on_a.connect()
    await on_b.connect()
    readers: list[SSEReader] = []
    pcs = []
    fresh = None
    try:
        await collect(on_a.audio_frames, 3)
        await collect(on_b.audio_frames, 3)
        # Outputs of A's session on B (they come through Redis, every 0.5 s) and a subscriber
        # on A of B's session, which has no outputs: it looks at the record every 5 s.
        sse_b = SSEReader(f"{b}echo-report/outputs?webrtc_id={on_a.webrtc_id}&token={on_a.token}")
        sse_a = SSEReader(f"{a}echo/outputs?webrtc_id={on_b.webrtc_id}&token={on_b.token}")
        readers += [sse_b, sse_a]
        await sse_b.next_output(10)
        await until(lambda: (sse_a.response is not None, True), 10, "the SSE subscription on A")
        before = {c.webrtc_id: cluster.row(c.webrtc_id) for c in (on_a, on_b)}
        assert all(r["state"] == "connected" for r in before.values()), before

        # -- the database becomes unreachable -------------------------------------------------
        proxy.cut()
        cut_at = time.monotonic()
        assert proxy.refuses()

        # New offers are refused on both workers: 503 with a clear body, never a 500.
        for worker in ("A", "B"):
            body, pc = await offer_body(f"dbdown{worker}{uuid.uuid4().hex[:6]}")
            pcs.append(pc)
            started = time.monotonic()
            result = await asyncio.to_thread(post, f"{cluster.base(worker)}echo/webrtc/offer", body)
            assert_database_unavailable(*result)
            assert time.monotonic() - started < 5
        # The hooks that read records refuse the same way (here through B, for A's session).
        assert_database_unavailable(
            *await asyncio.to_thread(
                post,
                f"{b}echo-report/input",
                {"webrtc_id": on_a.webrtc_id, "token": on_a.token, "gain": 0.5},
            )
        )
        assert_database_unavailable(
            *await asyncio.to_thread(
                get_status, f"{b}echo-report/outputs?webrtc_id={on_a.webrtc_id}&token={on_a.token}"
            )
        )
        assert_database_unavailable(
            *await asyncio.to_thread(
                post,
                f"{b}echo-report/webrtc/offer",
                {"type": "close", "webrtc_id": on_a.webrtc_id, "token": on_a.token},
            )
        )

        # Running sessions stream on through the whole outage, outputs included (B's
        # subscriber on A looks at the record twice meanwhile, and goes on).
        audio_at_cut = on_a.received["audio"], on_b.received["audio"]
        outputs = 0
        while time.monotonic() - cut_at < OUTAGE:
            seen = on_a.received["audio"], on_b.received["audio"]
            await asyncio.sleep(1.0)
            assert on_a.received["audio"] >= seen[0] + 30, "audio on A stalled"
            assert on_b.received["audio"] >= seen[1] + 30, "audio on B stalled"
            outputs += assert_no_event_but_outputs(sse_b)
            assert_no_event_but_outputs(sse_a)
        assert outputs >= OUTAGE - 2, outputs
        assert on_a.received["audio"] - audio_at_cut[0] >= 40 * OUTAGE
        assert on_b.received["audio"] - audio_at_cut[1] >= 40 * OUTAGE

        # A session that ends during the outage (its client goes away: the hang-up is
        # refused, the peer connection closes) ends for its subscribers at once.
        await on_b.close()
        assert await next_event_where(sse_a, lambda e: e[0] == "end", 10) == (
            "end",
            {"webrtc_id": on_b.webrtc_id},
        )
        assert cluster.row(on_b.webrtc_id)["state"] == "connected"  # not written yet
        frames_in_b = before[on_b.webrtc_id]["frames_in"]

        # -- the database is back -----------------------------------------------------------
        back_wall = datetime.now(timezone.utc)
        proxy.restore()
        back_at = time.monotonic()

        # A new offer is admitted (retried while a worker still answers 503, within a bound).
        while True:
            fresh = StreamClient(a, "echo", audio=ToneAudioTrack(), ice_host_addresses=ICE)
            try:
                await fresh.connect()
                break
            except SignalingFailed as exc:
                await fresh.close()
                fresh = None
                assert exc.status == 503 and exc.code == "database_unavailable", exc
                assert time.monotonic() - back_at < 10, "no admission within 10 s of the restore"
                await asyncio.sleep(0.2)
        await collect(fresh.audio_frames, 3)

        # The records catch up: the running session's lease and counters move again, and
        # the session that ended meanwhile is closed, with its counters.
        def caught_up():
            row = cluster.row(on_a.webrtc_id)
            return (
                row["heartbeat_at"] > back_wall
                and row["frames_in"] > before[on_a.webrtc_id]["frames_in"]
            ), row

        row = await until(caught_up, 10, "the record of the running session")
        # It was not reaped, then or after the outage.
        assert (row["state"], row["close_reason"]) == ("connected", ""), row
        row = await until(
            lambda: (lambda r: (r["state"] != "connected", r))(cluster.row(on_b.webrtc_id)),
            10,
            "the record of the session that ended",
        )
        assert (row["state"], row["close_reason"]) == ("closed", "peer_closed"), row
        assert row["frames_in"] > frames_in_b, row
        # Its stats summary was kept with the close (sampled every 2 s over the outage too).
        assert row["stats_summary"]["samples"] >= 2, row
        caught_up_after = time.monotonic() - back_at
        assert caught_up_after < 10, caught_up_after

        # Inputs through the other worker work again.
        status, body, _ = await asyncio.to_thread(
            post,
            f"{b}echo-report/input",
            {"webrtc_id": on_a.webrtc_id, "token": on_a.token, "gain": 0.25},
        )
        assert (status, body.get("inputs")) == (200, {"gain": 0.25}), body
        await sse_b.output_where(lambda data: data[1] == 0.25, 10)

        # Closing marks the record closed, and the subscriber hears the end.
        status, body, _ = await asyncio.to_thread(
            post,
            f"{b}echo-report/webrtc/offer",
            {"type": "close", "webrtc_id": on_a.webrtc_id, "token": on_a.token},
        )
        assert status == 200, body
        await until(
            lambda: (cluster.row(on_a.webrtc_id)["state"] == "closed", True),
            10,
            "the record closed",
        )
        row = cluster.row(on_a.webrtc_id)
        assert (row["state"], row["close_reason"]) == ("closed", "client_hangup")
        assert await next_event_where(sse_b, lambda e: e[0] == "end", 10) == (
            "end",
            {"webrtc_id": on_a.webrtc_id},
        )

        # A warning or two per worker and outage, no traceback, no lease ran out.
        for worker in ("A", "B"):
            log = cluster.log(worker)
            assert "Traceback" not in log, log[-4000:]
            # One per outage; a busy machine may let one query through mid-cut, which
            # splits it in two. Never one per request or beat.
            assert 1 <= log.count("cannot reach the database") <= 2, log[-4000:]
            assert "Reaped session" not in log and "was reaped while it ran" not in log, log[-4000:]
    except BaseException:
        cluster.print_logs()
        raise
    finally:
        for reader in readers:
            reader.close()
        for pc in pcs:
            await pc.close()
        for client in (on_a, on_b, fresh):
            if client is not None:
                await client.close()
