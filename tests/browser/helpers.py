"""Measurements taken inside the page: decoded frames, pixel bands, meter levels."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

# Luma of the top and bottom fifth of a <video>'s current frame, and its mean.
FRAME_BANDS = """(selector) => {
  const video = document.querySelector(selector);
  if (!video || !video.videoWidth) return null;
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const g = canvas.getContext("2d", { willReadFrequently: true });
  g.drawImage(video, 0, 0);
  const { data } = g.getImageData(0, 0, canvas.width, canvas.height);
  const band = (y0, y1) => {
    let sum = 0, n = 0;
    for (let y = y0; y < y1; y++) {
      for (let x = 0; x < canvas.width; x += 4) {
        const i = (y * canvas.width + x) * 4;
        sum += 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
        n++;
      }
    }
    return sum / n;
  };
  const fifth = Math.floor(canvas.height / 5);
  return { top: band(0, fifth), bottom: band(canvas.height - fifth, canvas.height),
           mean: band(0, canvas.height), width: canvas.width, height: canvas.height };
}"""


async def wait_for(
    probe: Callable[[], Awaitable[Any]],
    check: Callable[[Any], bool],
    what: str,
    timeout: float = 15.0,
    interval: float = 0.2,
) -> Any:
    """Poll ``probe()`` until ``check(value)``; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = await probe()
        try:
            if check(value):
                return value
        except (TypeError, KeyError):
            pass
        await asyncio.sleep(interval)
    raise AssertionError(f"Timed out after {timeout}s waiting for {what}; last value: {value!r}")


async def stats(page) -> dict[str, Any]:
    return await page.evaluate("() => window.rtcstreamPage.client.stats()")


async def bands(page, element: str) -> dict[str, float] | None:
    """Bands of a <video> given by id (``rtc-remote-video``) or CSS selector."""
    selector = element if element[0] in "#.[" or " " in element else f"#{element}"
    return await page.evaluate(FRAME_BANDS, selector)


async def state(page) -> str:
    return await page.get_attribute("#rtcstream-page", "data-state")


async def start(page, base_url: str, stream: str) -> None:
    """Open a stream's built-in page, press Start and wait until it is connected."""
    await page.goto(f"{base_url}/rtc/{stream}/")
    await page.click("#rtc-start")
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    try:
        await page.wait_for_selector("#rtcstream-page[data-state='connected']", timeout=20_000)
    except PlaywrightTimeout:
        error = await page.text_content("#rtc-error")
        raise AssertionError(
            f"{stream} did not connect: state={await state(page)!r}, "
            f"error={error!r}, console={page.console_messages[-10:]}"
        ) from None
