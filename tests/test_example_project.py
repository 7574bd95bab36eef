"""Smoke test of the example project, served the way ``make run`` serves it.

A real ``daphne`` subprocess serves ``example_project.asgi`` on a free port
(after ``manage.py migrate`` into a temporary SQLite file); the test lists the
streams over HTTP and streams video through ``flip`` with the aiortc client.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

EXPECTED = {
    "flip": ("video", "send-receive"),
    "video-counter": ("video", "send"),
    "pattern": ("video", "receive"),
    "echo": ("audio", "send-receive"),
    "level": ("audio", "send"),
    "tone": ("audio", "receive"),
    "av-echo": ("audio-video", "send-receive"),
    "av-counter": ("audio-video", "send"),
    "av-tone": ("audio-video", "receive"),
    "brightness": ("video", "send-receive"),
    "say-back": ("audio", "send-receive"),
    "assistant": ("audio", "send-receive"),
}

pytestmark = pytest.mark.media


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def example_env(db_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    # Always the embedded setup: SQLite, in-memory channel layer, loopback ICE.
    for name in ("RTCSTREAM_EXAMPLE_REDIS", "RTCSTREAM_EXAMPLE_POSTGRES"):
        env.pop(name, None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "example_project.settings",
            "RTCSTREAM_EXAMPLE_DB": str(db_path),
            "RTCSTREAM_ICE_HOSTS": "127.0.0.1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def daphne_command() -> list[str]:
    script = Path(sys.executable).parent / "daphne"
    return [str(script)] if script.exists() else [shutil.which("daphne") or "daphne"]


def get_json(url: str) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


async def wait_until_serving(
    url: str, process: subprocess.Popen, log: Path, timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"daphne exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            status, _ = await asyncio.to_thread(get_json, url)
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    pytest.fail(f"daphne did not answer {url} within {timeout}s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


async def test_example_project_serves_streams_and_flips_video(tmp_path):
    from django_rtcstream.client import StreamClient, SyntheticVideoTrack

    env = example_env(tmp_path / "example.sqlite3")
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "daphne.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [
                *daphne_command(),
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "example_project.asgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        await wait_until_serving(f"{base}/rtc/streams/", process, log)

        status, body = await asyncio.to_thread(get_json, f"{base}/rtc/streams/")
        assert status == 200, body
        listed = {s["name"]: (s["modality"], s["mode"]) for s in body["streams"]}
        assert listed == EXPECTED
        brightness = next(s for s in body["streams"] if s["name"] == "brightness")
        assert [i["name"] for i in brightness["inputs"]] == ["gain", "mirror"]

        # The home page links every stream to its built-in page, where a newcomer goes.
        def home() -> str:
            with urllib.request.urlopen(f"{base}/", timeout=10) as response:
                return response.read().decode()

        page = await asyncio.to_thread(home)
        for name in EXPECTED:
            assert f'<a href="/rtc/{name}/">{name}</a>' in page, name

        def status_of(url: str) -> int:
            with urllib.request.urlopen(url, timeout=10) as response:
                return int(response.status)

        for name in EXPECTED:  # and each linked page is there
            assert await asyncio.to_thread(status_of, f"{base}/rtc/{name}/") == 200, name

        client = StreamClient(
            f"{base}/rtc/", "flip", video=SyntheticVideoTrack(), ice_host_addresses=["127.0.0.1"]
        )
        try:
            await client.connect()
            # Skip the first frames (the codec is still ramping up) and read a settled one.
            frame = None
            for _ in range(15):
                frame = await asyncio.wait_for(client.video_frames.get(), 10)
            image = frame.to_ndarray(format="bgr24")
            band = image.shape[0] // 10
            top, bottom = float(image[:band].mean()), float(image[-band:].mean())
            # SyntheticVideoTrack sends the top quarter white: flipped, it is at the bottom.
            assert bottom > 150 and top < 60, (top, bottom)
        finally:
            await client.close()
    finally:
        await asyncio.to_thread(stop, process)
    assert process.returncode is not None
