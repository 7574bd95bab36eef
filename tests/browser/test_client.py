"""rtcstream.js used directly, as a project's own template would: media sources,
track constraints, events and the audio-video page."""

from __future__ import annotations

import pytest

from tests.browser.helpers import bands, start, stats, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

IMPORT = 'const m = await import("/static/django_rtcstream/rtcstream.js");'


def script(body: str) -> str:
    """An async function for page.evaluate that has the client module as `m`."""
    return "async () => {\n" + IMPORT + body + "}"


async def test_canvas_source(site_url, page):
    """A canvas (white top quarter) streamed to flip comes back upside down."""
    await page.goto(f"{site_url}/rtc/")
    await page.evaluate(
        script("""
      const canvas = document.createElement("canvas");
      canvas.width = 320; canvas.height = 240;
      const g = canvas.getContext("2d");
      const paint = () => { g.fillStyle = "#101010"; g.fillRect(0, 0, 320, 240);
                            g.fillStyle = "#ffffff"; g.fillRect(0, 0, 320, 60); };
      paint(); setInterval(paint, 100);  // a canvas only yields frames when drawn
      const video = document.createElement("video");
      video.id = "them"; video.muted = true; document.body.append(video);
      window.client = await m.connect("/rtc/flip/", { media: "canvas", canvas, remoteVideo: video });
    """)
    )
    assert await page.evaluate("() => window.client.state") == "connected"
    await wait_for(
        lambda: bands(page, "#them"),
        lambda b: b["bottom"] > 180 and b["top"] < 60,
        "the flipped canvas",
    )
    await page.evaluate("() => window.client.close()")
    assert await page.evaluate("() => window.client.state") == "closed"


async def test_track_constraints_and_events(site_url, page):
    """Constraints reach getUserMedia; state, connection and message events arrive;
    outputs come over SSE with a single-use ticket, never the session token in a URL."""
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    await page.goto(f"{site_url}/rtc/")
    result = await page.evaluate(
        script("""
      const events = [];
      const client = new m.RTCStreamClient("/rtc/video-send/config",
        { constraints: { width: { exact: 320 }, height: { exact: 240 } } });
      client.on("state", (s) => events.push("state:" + s));
      client.on("connection", (d) => events.push("connection:" + d));
      client.on("warning", (d) => events.push("warning:" + d));
      const outputs = [];
      client.onOutput((v) => outputs.push(v));
      await client.start();
      const settings = client.localStream.getVideoTracks()[0].getSettings();
      const deadline = Date.now() + 10000;
      while (outputs.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      await client.close();
      return { events, outputs, width: settings.width, height: settings.height,
               signaling: client.signaling };
    """)
    )
    assert (result["width"], result["height"]) == (320, 240)
    # The server's "connection" message races the browser's own state change: only the
    # states' order is promised.
    states = [e for e in result["events"] if e.startswith("state:")]
    assert states[:2] == ["state:connecting", "state:connected"], result["events"]
    assert "connection:connected" in result["events"]
    assert "warning:first frame seen" in result["events"]
    assert result["events"][-2:] == ["state:closing", "state:closed"]
    assert len(result["outputs"]) >= 2 and result["outputs"][0][0] % 5 == 0
    assert result["signaling"] == "websocket"
    streams = [url for url in requested if "/outputs?" in url]
    assert streams and all("ticket=" in url for url in streams), requested
    assert not [url for url in requested if "token=" in url], requested


async def test_nothing_to_send(site_url, page):
    """media: "none" on a receive-only stream opens no device at all."""
    await page.add_init_script("""
      navigator.mediaDevices.getUserMedia = () => { window.askedForMedia = true;
        return Promise.reject(new DOMException("no", "NotAllowedError")); };
    """)
    await page.goto(f"{site_url}/rtc/")
    received = await page.evaluate(
        script("""
      const client = await m.connect("/rtc/tone/", { media: "none" });
      const deadline = Date.now() + 10000;
      let s = await client.stats();
      while (!(s.audio.packetsReceived > 20) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100)); s = await client.stats();
      }
      await client.close();
      return s.audio.packetsReceived;
    """)
    )
    assert received > 20
    assert await page.evaluate("() => window.askedForMedia === undefined")


async def test_audio_video_page(site_url, page, screenshot):
    await start(page, site_url, "av")
    await wait_for(
        lambda: stats(page),
        lambda s: s["video"]["framesDecoded"] > 10 and s["audio"]["packetsReceived"] > 50,
        "video frames and audio packets",
    )
    await wait_for(
        lambda: bands(page, "rtc-remote-video"),
        lambda b: b["bottom"] > 180 and b["top"] < 60,
        "flipped frames",
    )
    await wait_for(
        lambda: page.get_attribute("#rtc-meter-remote", "data-level"),
        lambda v: float(v) > 0.01,
        "the remote meter to move (the echoed microphone)",
    )
    await screenshot(page, "connected")
