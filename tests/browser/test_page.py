"""The built-in page in real Chromium: every mode, inputs, outputs, meters and errors."""

from __future__ import annotations

import pytest

from tests.browser.helpers import bands, start, stats, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


async def test_video_send_receive_flip(site_url, page, screenshot):
    await page.goto(f"{site_url}/rtc/flip/")
    await screenshot(page, "idle")
    await start(page, site_url, "flip")
    first = await wait_for(lambda: stats(page), lambda s: s["video"]["framesDecoded"] > 0,
                           "a first decoded frame")
    await wait_for(lambda: stats(page),
                   lambda s: s["video"]["framesDecoded"] >= first["video"]["framesDecoded"] + 20,
                   "framesDecoded to grow")
    # The camera's test card is white on top; the handler flips it upside down.
    local = await wait_for(lambda: bands(page, "rtc-local-video"), lambda b: b is not None,
                           "the local preview")
    assert local["top"] > 180 and local["bottom"] < 60, local
    remote = await wait_for(lambda: bands(page, "rtc-remote-video"),
                            lambda b: b["bottom"] > 180 and b["top"] < 60,
                            "the flipped card in the returned frames")
    assert remote["width"] > 0
    await screenshot(page, "connected")
    await page.click("#rtc-start")
    await page.wait_for_selector("#rtcstream-page[data-state='closed']")
    assert await page.text_content("#rtc-state") == "Stopped"
    await screenshot(page, "stopped")
