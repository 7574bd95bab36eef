"""The built-in page in real Chromium: every mode, inputs, outputs, meters and errors."""

from __future__ import annotations

import asyncio

import pytest

from tests.browser.helpers import bands, start, stats, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


async def test_video_send_receive_flip(site_url, page, screenshot):
    await page.goto(f"{site_url}/rtc/flip/")
    await screenshot(page, "idle")
    # Hold the config request a moment to catch the page while it connects.
    release = asyncio.Event()

    async def hold(route):
        await release.wait()
        await route.continue_()

    await page.route("**/rtc/flip/config", hold)
    await page.click("#rtc-start")
    await page.wait_for_selector("#rtcstream-page[data-state='connecting']")
    assert await page.text_content("#rtc-start") == "Stop"
    await screenshot(page, "connecting")
    release.set()
    await page.wait_for_selector("#rtcstream-page[data-state='connected']")
    first = await wait_for(
        lambda: stats(page), lambda s: s["video"]["framesDecoded"] > 0, "a first decoded frame"
    )
    await wait_for(
        lambda: stats(page),
        lambda s: s["video"]["framesDecoded"] >= first["video"]["framesDecoded"] + 20,
        "framesDecoded to grow",
    )
    # The camera's test card is white on top; the handler flips it upside down.
    local = await wait_for(
        lambda: bands(page, "rtc-local-video"), lambda b: b is not None, "the local preview"
    )
    assert local["top"] > 180 and local["bottom"] < 60, local
    remote = await wait_for(
        lambda: bands(page, "rtc-remote-video"),
        lambda b: b["bottom"] > 180 and b["top"] < 60,
        "the flipped card in the returned frames",
    )
    assert remote["width"] > 0
    await screenshot(page, "connected")
    await page.click("#rtc-start")
    await page.wait_for_selector("#rtcstream-page[data-state='closed']")
    assert await page.text_content("#rtc-state") == "Stopped"
    await screenshot(page, "stopped")


async def test_index_lists_every_stream(site_url, page, screenshot):
    from django_rtcstream.registry import stream_names

    await page.goto(f"{site_url}/rtc/")
    links = await page.eval_on_selector_all(
        ".rtc-stream-link", "els => els.map(e => e.getAttribute('href'))"
    )
    assert links == [f"/rtc/{name}/" for name in stream_names()]
    await screenshot(page, "index")
    await page.click("a[href='/rtc/gain/']")
    await page.wait_for_selector("#rtc-input-level")
    assert await page.text_content("h1") == "gain"


async def test_unknown_stream_page_says_so(site_url, page, screenshot):
    response = await page.goto(f"{site_url}/rtc/no-such-stream/")
    assert response.status == 404
    assert "There is no stream called “no-such-stream”" in await page.text_content(".rtc-alert")
    await screenshot(page, "not-found")


async def test_input_changes_the_handlers_output(site_url, page, screenshot):
    """gain scales the frame by its Level slider: moving it to 0 turns the frames black."""
    await start(page, site_url, "gain")
    await wait_for(
        lambda: bands(page, "rtc-remote-video"), lambda b: b["top"] > 180, "the card at full level"
    )
    await page.fill("#rtc-input-level", "0")
    assert await page.text_content("#rtc-output-level") == "0"
    await wait_for(
        lambda: bands(page, "rtc-remote-video"),
        lambda b: b["top"] < 20,
        "black frames after Level = 0",
    )
    local = await bands(page, "rtc-local-video")
    assert local["top"] > 180, "only the returned frames change"
    await screenshot(page, "level-0")


async def test_audio_send_receive_meter_moves(site_url, page, screenshot):
    await start(page, site_url, "echo")
    await wait_for(
        lambda: stats(page), lambda s: s["audio"]["packetsReceived"] > 50, "remote audio packets"
    )

    async def levels():
        return [
            float(await page.get_attribute("#rtc-meter-remote", "data-level")),
            float(await page.get_attribute("#rtc-meter-local", "data-level")),
        ]

    # Levels are compared with the microphone's own: the browser's audio processing
    # (noise suppression, gain control) changes the absolute level over time.
    await wait_for(levels, lambda v: v[1] > 0.01 and v[0] > 0.3 * v[1], "both meters to move")
    # The echo's Gain input scales what comes back: at 0 the remote meter drops.
    await page.fill("#rtc-input-gain", "0")
    await page.dispatch_event("#rtc-input-gain", "change")
    await wait_for(levels, lambda v: v[1] > 0.01 and v[0] < 0.05 * v[1], "the echo to go quiet")
    await page.fill("#rtc-input-gain", "1")
    await page.dispatch_event("#rtc-input-gain", "change")
    await wait_for(levels, lambda v: v[1] > 0.01 and v[0] > 0.3 * v[1], "the echo to come back")
    await screenshot(page, "connected")


async def test_receive_only_video(site_url, page, screenshot):
    """video-receive yields gray frames whose shade is its Level input."""
    await page.goto(f"{site_url}/rtc/video-receive/")
    assert await page.query_selector("#rtc-local-video") is None, "receive-only: no camera preview"
    await start(page, site_url, "video-receive")
    await wait_for(
        lambda: stats(page), lambda s: s["video"]["framesDecoded"] > 10, "decoded frames"
    )
    await wait_for(
        lambda: bands(page, "rtc-remote-video"),
        lambda b: abs(b["mean"] - 200) < 12,
        "gray 200 frames",
    )
    await page.fill("#rtc-input-level", "60")
    await page.dispatch_event("#rtc-input-level", "change")
    await wait_for(
        lambda: bands(page, "rtc-remote-video"),
        lambda b: abs(b["mean"] - 60) < 12,
        "gray 60 frames after the input changed",
    )
    await screenshot(page, "connected")


async def test_receive_only_audio(site_url, page, screenshot):
    await start(page, site_url, "tone")
    await wait_for(
        lambda: stats(page), lambda s: s["audio"]["packetsReceived"] > 50, "remote audio packets"
    )
    await wait_for(
        lambda: page.get_attribute("#rtc-meter-remote", "data-level"),
        lambda v: float(v) > 0.05,
        "the remote meter to move",
    )
    assert await page.query_selector("#rtc-meter-local") is None
    await screenshot(page, "connected")


async def test_send_only_video_shows_outputs_and_warnings(site_url, page, screenshot):
    """video-send counts frames and reports AdditionalOutputs(count, mean) every 5th."""
    await page.goto(f"{site_url}/rtc/video-send/")
    assert await page.query_selector("#rtc-remote-video") is None, "send-only: nothing comes back"
    await start(page, site_url, "video-send")
    await wait_for(lambda: stats(page), lambda s: s["video"]["packetsSent"] > 20, "video sent")
    first = await wait_for(
        lambda: page.text_content("#rtc-outputs-list dd"),
        lambda t: t and int(t) >= 5,
        "an output in the panel",
    )
    await wait_for(
        lambda: page.text_content("#rtc-outputs-list dd"),
        lambda t: int(t) > int(first),
        "the outputs to update",
    )
    assert await page.is_hidden("#rtc-outputs-empty")
    assert "first frame seen" in await page.text_content("#rtc-messages-list")
    await screenshot(page, "outputs")


async def test_limit_reached_is_shown(site_url, browser, page, screenshot):
    """limited takes one session: a second page is told the stream is full."""
    await start(page, site_url, "limited")
    context = await browser.new_context(viewport={"width": 1100, "height": 900})
    second = await context.new_page()
    try:
        await second.goto(f"{site_url}/rtc/limited/")
        await second.click("#rtc-start")
        await second.wait_for_selector("#rtcstream-page[data-state='failed']")
        error = await second.text_content("#rtc-error")
        assert "is full" in error and "only place" in error and "press Start again" in error, error
        assert await second.get_attribute("#rtc-error", "data-code") == "concurrency_limit_reached"
        assert await second.text_content("#rtc-start") == "Start"
        await screenshot(second, "full")
        # Once the first page stops, the second one gets in.
        await page.click("#rtc-start")
        await page.wait_for_selector("#rtcstream-page[data-state='closed']")
        await wait_for(lambda: _start_again(second), lambda ok: ok, "a free place", timeout=20)
        assert await second.is_hidden("#rtc-error")
    finally:
        await context.close()


async def _start_again(page) -> bool:
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    if await page.get_attribute("#rtcstream-page", "data-state") in ("failed", "closed", "idle"):
        await page.click("#rtc-start")
    try:
        await page.wait_for_selector("#rtcstream-page[data-state='connected']", timeout=3000)
        return True
    except PlaywrightTimeout:
        return False


async def test_phone_sized_screen(site_url, browser, screenshot):
    context = await browser.new_context(
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
    )
    page = await context.new_page()
    try:
        await start(page, site_url, "gain")
        await wait_for(
            lambda: bands(page, "rtc-remote-video"),
            lambda b: b["top"] > 180,
            "frames on a phone-sized screen",
        )
        width = await page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways ({width}px)"
        await screenshot(page, "phone")
    finally:
        await context.close()
