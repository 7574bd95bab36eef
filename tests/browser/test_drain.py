"""rtcstream.js when its worker drains: it moves to a new session through the same URL.

The server runs in the test's process, so the test drains it (as SIGTERM or
``rtcstream_drain`` would), sees the page's new offer refused with 503 ``draining``,
then resumes the worker (standing in for the load balancer's next worker): the
page's retry connects, it hangs up the old session, and media flows on.
"""

from __future__ import annotations

import pytest

from django_rtcstream.models import StreamSession
from django_rtcstream.sessions import drain
from tests.browser.helpers import bands, wait_for
from tests.browser.test_client import script

pytestmark = pytest.mark.django_db(transaction=True)


async def test_the_js_client_moves_to_a_new_session_when_its_worker_drains(site_url, page):
    offers = []
    page.on(
        "response",
        lambda r: offers.append(r.status) if r.url.endswith("/webrtc/offer") else None,
    )
    await page.goto(f"{site_url}/rtc/")
    await page.evaluate(
        script("""
      const canvas = document.createElement("canvas");
      canvas.width = 320; canvas.height = 240;
      const g = canvas.getContext("2d");
      const paint = () => { g.fillStyle = "#101010"; g.fillRect(0, 0, 320, 240);
                            g.fillStyle = "#ffffff"; g.fillRect(0, 0, 320, 60); };
      paint(); setInterval(paint, 100);
      const video = document.createElement("video");
      video.id = "them"; video.muted = true; document.body.append(video);
      window.moves = [];
      window.client = await m.connect("/rtc/flip/", { media: "canvas", canvas, remoteVideo: video,
                                                      signaling: "http" });
      for (const type of ["draining", "reconnecting", "reconnected"]) {
        window.client.on(type, (detail) => window.moves.push({ type, detail }));
      }
    """)
    )
    first = await page.evaluate("() => window.client.webrtcId")
    await wait_for(lambda: bands(page, "#them"), lambda b: b["bottom"] > 180, "flipped frames")

    drain.begin(20)
    try:
        await wait_for(lambda: page.evaluate("() => window.moves"), lambda m: len(m) >= 2, "moves")
        await wait_for(
            lambda: _async(offers), lambda o: 503 in o, "an offer refused while draining"
        )
    finally:
        drain.resume()
    moved = await wait_for(
        lambda: page.evaluate("() => window.moves"),
        lambda m: any(e["type"] == "reconnected" for e in m),
        "the move to a new session",
    )
    kinds = [e["type"] for e in moved]
    assert kinds[:2] == ["draining", "reconnecting"], moved
    assert moved[0]["detail"]["reconnect"] is True
    reconnected = next(e["detail"] for e in moved if e["type"] == "reconnected")
    assert reconnected["previous"] == first and reconnected["webrtcId"] != first
    assert await page.evaluate("() => window.client.state") == "connected"
    assert await page.evaluate("() => window.client.webrtcId") == reconnected["webrtcId"]

    async def old_record():
        return (
            await StreamSession.objects.filter(webrtc_id=first)
            .values_list("state", "close_reason")
            .afirst()
        )

    assert await wait_for(old_record, lambda r: r[0] == "closed", "the old session hung up") == (
        "closed",
        "client_hangup",
    )
    new = await StreamSession.objects.aget(webrtc_id=reconnected["webrtcId"])
    assert new.state == "connected"
    # Media flows on the new session: fresh flipped frames.
    await wait_for(lambda: bands(page, "#them"), lambda b: b["bottom"] > 180, "flipped frames")
    await page.evaluate("() => window.client.close()")


async def _async(value):
    return value
