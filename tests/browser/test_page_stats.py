"""The built-in page draws the server's stats of the session live, in real Chromium."""

from __future__ import annotations

import pytest

from tests.browser.helpers import start, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


async def test_the_page_draws_rtt_bitrate_and_loss_under_the_media(site_url, page, screenshot):
    await page.goto(f"{site_url}/rtc/echo/")
    assert await page.is_hidden("#rtc-stats")  # nothing to draw before a session
    await start(page, site_url, "echo")

    async def charts():
        return await page.evaluate(
            """() => Object.fromEntries(Array.from(
                document.querySelectorAll('#rtc-stats [data-chart]'),
                (f) => [f.dataset.chart, {
                    points: Number(f.dataset.points || 0),
                    lines: f.querySelectorAll('polyline').length,
                    value: f.querySelector('[data-value]').textContent,
                }]))"""
        )

    # A "stats" message every STATS_INTERVAL (2 s): two samples and an RTT from Chromium's
    # RTCP receiver reports.
    drawn = await wait_for(
        charts,
        lambda c: c["rtt"]["points"] >= 2 and c["rtt"]["lines"] >= 1 and c["bitrate"]["lines"] == 2,
        "the charts to be drawn",
        timeout=30.0,
    )
    assert await page.is_visible("#rtc-stats")
    assert drawn["rtt"]["value"].endswith(" ms"), drawn
    assert drawn["bitrate"]["value"].endswith(" kbit/s"), drawn
    incoming = float(drawn["bitrate"]["value"].split(" / ")[0])
    assert 8 < incoming < 1000, drawn  # Chromium's Opus from the fake microphone
    assert drawn["loss"]["value"].endswith(" %"), drawn
    await screenshot(page, "stats")
