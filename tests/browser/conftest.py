"""Browser tests: Debian's Chromium, driven by Playwright's async API, against a live server.

Chromium runs headless with fake media devices fed from files this conftest
writes (a test card whose top quarter is white, and bursts of tones), so
what the handler does to the media can be measured in the returned frames. It
gathers host candidates on loopback (``--allow-loopback-in-peer-connection``)
to meet the server's ``ICE_HOST_ADDRESSES = ["127.0.0.1"]``.

No browser is ever downloaded: the tests launch ``/usr/bin/chromium`` (or
``$RTCSTREAM_CHROMIUM``). Without it, or without Playwright, the tests skip
with the reason, except under CI (``CI=true``), where they fail: CI installs
Chromium, and a browser suite that silently skips proves nothing.

One Chromium serves every test here (a launch costs more than most tests); it
closes after the last of them rather than idling through the rest of a full
run. Each test gets a browser context of its own, so no cookies, storage, init
scripts or routes cross from one test to the next. The fake media files are
the same for every test (they are launch flags). A Chromium that died is
launched again for the next test. Playwright's connection lives on the event
loop that launched it, so every test here and every async fixture it uses runs
on pytest-asyncio's loop of this package (``loop_scope="package"``, added to
each test below); the live servers (``site_url``, ``serve``) run on that loop
too, each for the length of one test.

Screenshots go to ``artifacts/screenshots/`` (gitignored).
"""

from __future__ import annotations

import math
import os
import shutil
import struct
import wave
from pathlib import Path

import pytest
import pytest_asyncio

from tests.conftest import serve  # the browser test modules import it from here too

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(
            f"{reason} CI must run the browser tests: install it (see .ci/run).", pytrace=False
        )
    pytest.skip(reason)


def chromium_executable() -> str:
    path = os.environ.get("RTCSTREAM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        _unavailable("Chromium is not installed (apt-get install -y chromium chromium-driver).")
    return path


@pytest.fixture(scope="session")
def fake_media(tmp_path_factory) -> dict[str, Path]:
    """A Y4M test card (top quarter white, the rest dark) and a WAV of tone bursts."""
    folder = tmp_path_factory.mktemp("fake-media")
    width, height, frames = 320, 240, 30
    luma = bytearray([16]) * (width * height)
    luma[: width * (height // 4)] = bytes([235]) * (width * (height // 4))
    chroma = bytes([128]) * ((width // 2) * (height // 2))
    video = folder / "card.y4m"
    with video.open("wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n" + bytes(luma) + chroma + chroma)
    # Speech-like bursts (200 ms notes of changing pitch, 50 ms pauses) rather than a
    # steady tone, which the browser's noise suppression learns to remove.
    audio = folder / "tone.wav"
    rate, note, gap = 48000, 9600, 2400
    values = []
    for frequency in (330, 440, 550, 660):
        for i in range(note):
            fade = min(1.0, i / 480, (note - i) / 480)
            values.append(int(0.5 * fade * 32767 * math.sin(2 * math.pi * frequency * i / rate)))
        values.extend([0] * gap)
    samples = struct.pack(f"<{len(values)}h", *values)
    with wave.open(str(audio), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples)
    return {"video": video, "audio": audio}


HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    """Run every async test of tests/browser on this package's event loop (see the top).

    Prepended, so that it is the closest ``asyncio`` mark, ahead of the bare one
    that auto mode gives each coroutine test.
    """
    for item in items:
        if item.get_closest_marker("asyncio") is not None and HERE in item.path.parents:
            item.add_marker(pytest.mark.asyncio(loop_scope="package"), append=False)


class Chromium:
    """The browser tests' Chromium, launched on first use, and again if it has died."""

    def __init__(self, playwright, executable: str, flags: list[str]) -> None:
        self.playwright, self.executable, self.flags = playwright, executable, flags
        self._browser = None

    async def browser(self):
        if self._browser is None or not self._browser.is_connected():
            self._browser = await self.playwright.chromium.launch(
                executable_path=self.executable, headless=True, args=self.flags
            )
        return self._browser

    async def close(self) -> None:
        if self._browser is not None and self._browser.is_connected():
            await self._browser.close()


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def chromium(fake_media):
    executable = chromium_executable()
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("Playwright is not installed (pip install -e '.[test]').")
    flags = [
        *CHROMIUM_FLAGS,
        f"--use-file-for-fake-video-capture={fake_media['video']}",
        f"--use-file-for-fake-audio-capture={fake_media['audio']}",
    ]
    async with async_playwright() as playwright:
        launcher = Chromium(playwright, executable, flags)
        try:
            yield launcher
        finally:
            await launcher.close()


@pytest_asyncio.fixture(loop_scope="package")
async def browser(chromium):
    """The shared Chromium (open a context of your own, and close it after)."""
    return await chromium.browser()


@pytest_asyncio.fixture(loop_scope="package")
async def page(browser):
    """A page in a fresh browser context of this test's own."""
    context = await browser.new_context(viewport={"width": 1100, "height": 900})
    try:
        page = await context.new_page()
        page.set_default_timeout(20_000)
        page.console_messages = []  # type: ignore[attr-defined]
        page.on("console", lambda m: page.console_messages.append(f"{m.type}: {m.text}"))
        yield page
    finally:
        await context.close()


@pytest_asyncio.fixture(loop_scope="package")
async def site_url(transactional_db):
    """The test project (with static files) on a free port; yields its base URL."""
    from tests.browser.asgi import build_application

    url, stop = await serve(build_application())
    yield url
    await stop()


@pytest.fixture
def screenshot(request):
    """``await screenshot(page, "state")`` saves artifacts/screenshots/<test>-<state>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    name = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")

    async def take(page, state: str, full_page: bool = True) -> Path:
        path = SCREENSHOTS / f"{name}-{state}.png"
        await page.screenshot(path=str(path), full_page=full_page)
        return path

    return take
