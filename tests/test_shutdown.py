"""SIGTERM to a real server process with no drain (``DRAIN_TIMEOUT`` 0; the drain is
tests/test_drain.py's): it exits promptly, every session closes as
``server_shutdown`` (so every handler's ``shutdown()`` runs) and every SSE
subscriber gets its ``event: end``, under uvicorn and under daphne.

Each server is a subprocess serving ``tests.asgi`` on a free port, with its own
SQLite file (migrated first) and a file where the test streams note their
events (``RTCSTREAM_TEST_EVENTS``, see tests/streams.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from django_rtcstream.client import StreamClient, ToneAudioTrack
from tests.conftest import free_port
from tests.media import collect

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.media


def server_command(server: str, port: int) -> list[str]:
    if server == "uvicorn":
        return [
            str(BIN / "uvicorn"),
            "tests.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "info",
        ]
    return [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "tests.asgi:application"]


class Subscriber(threading.Thread):
    """Reads a session's SSE output hook (token in a header) until the stream ends."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.request = urllib.request.Request(url, headers={"X-Session-Token": token})
        self.connected = threading.Event()
        self.lines: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with urllib.request.urlopen(self.request, timeout=20) as response:
                for raw in response:
                    line = raw.decode().rstrip("\n")
                    self.lines.append(line)
                    if line == ": connected":
                        self.connected.set()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def events(self) -> list[tuple[str, object]]:
        found, name = [], None
        for line in self.lines:
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                found.append((name, json.loads(line[6:])))
        return found


async def wait_serving(url: str, process: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            await asyncio.to_thread(urllib.request.urlopen, url, timeout=2)
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"the server did not answer {url} within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.mark.parametrize("server", ["uvicorn", "daphne"])
async def test_sigterm_closes_every_session_and_ends_every_sse_stream(server, tmp_path):
    db, events_file, log = tmp_path / "db.sqlite3", tmp_path / "events.txt", tmp_path / "server.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
        "RTCSTREAM_TEST_SQLITE": str(db),
        "RTCSTREAM_TEST_EVENTS": str(events_file),
        "PYTHONUNBUFFERED": "1",
        "RTCSTREAM_TEST_DRAIN_TIMEOUT": "0",  # no grace: tests/test_drain.py has it
    }
    migrate = subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    port = free_port()
    base = f"http://127.0.0.1:{port}/rtc/"
    with open(log, "w") as out:
        process = subprocess.Popen(
            server_command(server, port), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    clients: list[StreamClient] = []
    try:
        await wait_serving(f"{base}streams/", process, log)
        for signaling in ("http", "http", "websocket"):
            client = StreamClient(
                base,
                "echo",
                audio=ToneAudioTrack(),
                signaling=signaling,
                ice_host_addresses=["127.0.0.1"],
            )
            clients.append(client)
            await asyncio.wait_for(client.connect(), 20)
        for client in clients:
            await asyncio.wait_for(collect(client.audio_frames, 5), 10)
        subscribers = [
            Subscriber(f"{base}echo/outputs?webrtc_id={c.webrtc_id}", c.token) for c in clients
        ]
        for subscriber in subscribers:
            subscriber.start()
        for subscriber in subscribers:
            assert await asyncio.to_thread(subscriber.connected.wait, 10), subscriber.error

        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{server} did not exit within 10 s of SIGTERM:\n{log.read_text()[-3000:]}")
        took = time.monotonic() - started

        for subscriber in subscribers:
            await asyncio.to_thread(subscriber.join, 5)
        ids = sorted(c.webrtc_id for c in clients)
        with contextlib.closing(sqlite3.connect(db)) as connection:
            rows = connection.execute(
                "SELECT webrtc_id, state, close_reason FROM django_rtcstream_streamsession "
                "ORDER BY webrtc_id"
            ).fetchall()
        shutdowns = sorted(
            line.split()[0]
            for line in events_file.read_text().splitlines()
            if line.split()[1] == "shutdown"
        )
        ends = [[e for e in s.events() if e[0] == "end"] for s in subscribers]
        report = (
            f"{server} exited in {took:.1f} s; records {rows}; shutdown() ran for "
            f"{shutdowns}; SSE ends {ends}\n{log.read_text()[-3000:]}"
        )
        assert rows == [(i, "closed", "server_shutdown") for i in ids], report
        assert shutdowns == ids, report
        for client, subscriber, end in zip(clients, subscribers, ends, strict=True):
            assert not subscriber.is_alive(), report
            assert len(end) == 1 and end[0][1]["webrtc_id"] == client.webrtc_id, report
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
        for client in clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 5)
