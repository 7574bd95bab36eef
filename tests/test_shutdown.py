"""SIGTERM to a real server process with no drain (``DRAIN_TIMEOUT`` 0; the drain is
tests/test_drain.py's): it exits promptly, every session closes as
``server_shutdown`` (so every handler's ``shutdown()`` runs) and every SSE
subscriber gets its ``event: end``, under uvicorn and under daphne.

Each server is a subprocess serving ``tests.asgi`` on a free port, with its own
SQLite file (migrated first) and a file where the test streams note their
events (``RTCSTREAM_TEST_EVENTS``, see tests/streams.py): tests/server_process.py.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time
import urllib.request

import pytest

from django_rtcstream.client import StreamClient, ToneAudioTrack
from tests.media import collect
from tests.server_process import serving

pytestmark = pytest.mark.media


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


@pytest.mark.parametrize("server", ["uvicorn", "daphne"])
async def test_sigterm_closes_every_session_and_ends_every_sse_stream(server, tmp_path):
    # No grace: tests/test_drain.py has it.
    async with serving(server, tmp_path, RTCSTREAM_TEST_DRAIN_TIMEOUT="0") as running:
        base, process, clients = running.base, running.process, running.clients
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
            pytest.fail(f"{server} did not exit within 10 s of SIGTERM:\n{running.log_tail()}")
        took = time.monotonic() - started

        for subscriber in subscribers:
            await asyncio.to_thread(subscriber.join, 5)
        ids = sorted(c.webrtc_id for c in clients)
        rows = running.records(
            "SELECT webrtc_id, state, close_reason FROM django_rtcstream_streamsession "
            "ORDER BY webrtc_id"
        )
        shutdowns = running.shutdowns()
        ends = [[e for e in s.events() if e[0] == "end"] for s in subscribers]
        report = (
            f"{server} exited in {took:.1f} s; records {rows}; shutdown() ran for "
            f"{shutdowns}; SSE ends {ends}\n{running.log_tail()}"
        )
        assert rows == [(i, "closed", "server_shutdown") for i in ids], report
        assert shutdowns == ids, report
        for client, subscriber, end in zip(clients, subscribers, ends, strict=True):
            assert not subscriber.is_alive(), report
            assert len(end) == 1 and end[0][1]["webrtc_id"] == client.webrtc_id, report
