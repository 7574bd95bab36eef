"""The benchmark's nearly free load client (bench/replay.py, bench/ws_client.py) is sound.

Its media is encoded once and replayed as packets through aiortc's stock
sender, and most of its sessions count what comes back instead of decoding.
A capacity figure measured with it only means something if the servers accept
that media as they accept a real encoder's and transform it: these tests run
``bench/client.py`` as the benchmark does (a subprocess, JSON lines) against
this package's server (uvicorn, the test project) and against the bare aiortc
floor (``bench/floor_server.py``), and check what came back. Correctness only:
speed is the benchmark's business.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.conftest import free_port

pytest.importorskip("aiohttp", reason="bench/requirements.txt (aiohttp) is not installed")
pytest.importorskip("psutil", reason="bench/requirements.txt (psutil) is not installed")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.media]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WINDOW = 6.0
LEAD = 2.0  # seconds between "connected" and the window: a busy machine's first frames are late
ENOUGH = 10  # frames (audio: bursts) back in the window: the media was accepted and handled


async def run_client(spec: dict[str, Any], window: float = WINDOW) -> dict[str, Any]:
    """One ``bench/client.py`` process through its protocol; its result line."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        os.path.join(ROOT, "bench", "client.py"),
        json.dumps({"stagger": 0.05, **spec}),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert process.stdin is not None and process.stdout is not None

    async def line() -> dict[str, Any]:
        raw = await asyncio.wait_for(process.stdout.readline(), 90)
        assert raw, "the client exited early"
        return json.loads(raw)

    try:
        assert (await line())["event"] == "loaded"
        process.stdin.write(b"go\n")
        await process.stdin.drain()
        connected = await line()
        assert connected["failed"] == 0, connected
        start = time.monotonic() + LEAD
        command = {"window": [start, start + window], "grace": 1.0}
        process.stdin.write((json.dumps(command) + "\n").encode())
        await process.stdin.drain()
        result = await line()
        assert result["event"] == "result"
        await asyncio.wait_for(process.wait(), 30)
        return result
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def counted_in_window(session: dict[str, Any], window: float = WINDOW) -> int:
    return sum(1 for t in session["counted"] if 0 <= t < window + 1.0)


def assert_video_flipped(result: dict[str, Any]) -> None:
    sampled, counted = result["sessions"]
    assert sampled["error"] is None and counted["error"] is None, result
    # The decoded session: numbered frames came back upside down, none unflipped.
    assert sampled["returned"] >= ENOUGH, sampled
    assert sampled["unflipped"] == 0, sampled
    assert all(0 < rt < 10 for _, rt in sampled["rt"]), sampled["rt"][:5]
    # The counting session: frames came back though it never decoded one.
    assert "counted" not in sampled
    assert counted_in_window(counted) >= ENOUGH, counted


def assert_audio_echoed(result: dict[str, Any]) -> None:
    sampled, counted = result["sessions"]
    assert sampled["error"] is None and counted["error"] is None, result
    # Bursts identified by their frequency came back in order, with a round trip.
    assert sampled["returned"] >= ENOUGH, sampled
    assert all(0 < rt < 10 for _, rt in sampled["rt"]), sampled["rt"][:5]
    # The counting session found burst onsets (loud after quiet) in the echo.
    assert counted_in_window(counted) >= ENOUGH, counted


@pytest.fixture
def floor_server():
    """bench/floor_server.py (bare aiortc + aiohttp) on a free port; its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "bench", "floor_server.py"), "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    import urllib.request

    while True:
        try:
            urllib.request.urlopen(f"{base}/ready", timeout=1).read()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail("the floor server did not start")
            time.sleep(0.1)
    try:
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.mark.timeout(120)
async def test_replayed_video_is_flipped_by_our_server_for_decoding_and_counting_sessions(
    asgi_server,
):
    base = f"{asgi_server}/rtc"
    result = await run_client(
        {
            "kind": "video",
            "stream": "flip",
            "client": "replay",
            "bases": [base, base],
            "sampled": [True, False],
        }
    )
    assert_video_flipped(result)


@pytest.mark.timeout(120)
async def test_replayed_audio_is_echoed_by_our_server_for_decoding_and_counting_sessions(
    asgi_server,
):
    base = f"{asgi_server}/rtc"
    result = await run_client(
        {
            "kind": "audio",
            "stream": "echo",
            "client": "replay",
            "bases": [base, base],
            "sampled": [True, False],
        }
    )
    assert_audio_echoed(result)


@pytest.mark.timeout(120)
async def test_pre_encoded_websocket_audio_is_echoed_by_our_server(asgi_server):
    base = f"{asgi_server}/rtc"
    result = await run_client(
        {
            "kind": "audio",
            "stream": "echo",
            "client": "ws",
            "bases": [base, base],
            "sampled": [True, False],
        }
    )
    assert_audio_echoed(result)


@pytest.mark.timeout(150)
async def test_the_floor_server_flips_and_echoes_the_replayed_media(floor_server):
    bases = [floor_server, floor_server]
    video = await run_client(
        {
            "kind": "video",
            "stream": "flip",
            "client": "replay",
            "bases": bases,
            "sampled": [True, False],
        }
    )
    assert_video_flipped(video)
    audio = await run_client(
        {
            "kind": "audio",
            "stream": "echo",
            "client": "replay",
            "bases": bases,
            "sampled": [True, False],
        }
    )
    assert_audio_echoed(audio)
    ws = await run_client(
        {
            "kind": "audio",
            "stream": "echo",
            "client": "ws",
            "bases": bases,
            "sampled": [True, False],
        }
    )
    assert_audio_echoed(ws)
