"""Every failure a user can meet shows what happened and what to do, in plain words."""

from __future__ import annotations

import pytest

from tests.browser.conftest import serve
from tests.browser.helpers import bands, start, stats, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

DENY_CAMERA = """
navigator.mediaDevices.getUserMedia = () =>
  Promise.reject(new DOMException("Permission denied", "NotAllowedError"));
"""
NO_CAMERA = """
navigator.mediaDevices.getUserMedia = () =>
  Promise.reject(new DOMException("Requested device not found", "NotFoundError"));
"""
# No relayed candidates can exist without a TURN server: ICE never succeeds.
BLOCK_ICE = """
const Original = window.RTCPeerConnection;
window.RTCPeerConnection = function (config) {
  return new Original({ ...(config || {}), iceTransportPolicy: "relay" });
};
window.RTCPeerConnection.prototype = Original.prototype;
"""
BLOCK_WEBSOCKET = """
window.WebSocket = class { constructor() { throw new Error("blocked by a proxy"); } };
window.WebSocket.OPEN = 1;
"""


async def failed_with(page, stream_url: str) -> tuple[str, str]:
    await page.goto(stream_url)
    await page.click("#rtc-start")
    await page.wait_for_selector("#rtcstream-page[data-state='failed']", timeout=30_000)
    return (
        await page.get_attribute("#rtc-error", "data-code"),
        await page.text_content("#rtc-error"),
    )


async def test_camera_denied(site_url, page, screenshot):
    await page.add_init_script(DENY_CAMERA)
    code, text = await failed_with(page, f"{site_url}/rtc/flip/")
    assert code == "media_denied"
    assert "not allowed to use your camera" in text and "Allow access" in text, text
    await screenshot(page, "failed")


async def test_microphone_missing(site_url, page, screenshot):
    await page.add_init_script(NO_CAMERA)
    code, text = await failed_with(page, f"{site_url}/rtc/echo/")
    assert code == "no_device"
    assert "No microphone was found" in text and "Connect one" in text, text
    await screenshot(page, "failed")


async def test_ice_failure(site_url, page, screenshot):
    await page.add_init_script(BLOCK_ICE)
    code, text = await failed_with(page, f"{site_url}/rtc/flip/")
    assert code in ("ice_failed", "connect_timeout"), code
    assert "firewall" in text and "TURN server" in text, text
    await screenshot(page, "failed")


async def test_server_unreachable(site_url, page, screenshot):
    await page.goto(f"{site_url}/rtc/flip/")
    await page.route("**/rtc/flip/config", lambda route: route.abort("connectionrefused"))
    await page.click("#rtc-start")
    await page.wait_for_selector("#rtcstream-page[data-state='failed']")
    assert await page.get_attribute("#rtc-error", "data-code") == "server_unreachable"
    assert "cannot be reached" in await page.text_content("#rtc-error")
    await screenshot(page, "failed")


async def test_server_gone_while_streaming(transactional_db, page, screenshot):
    from tests.browser.asgi import build_application

    url, stop = await serve(build_application())
    try:
        await start(page, url, "flip")
        await wait_for(lambda: stats(page), lambda s: s["video"]["framesDecoded"] > 5, "frames")
    finally:
        await stop()
    await page.wait_for_selector("#rtcstream-page[data-state='failed']")
    code = await page.get_attribute("#rtc-error", "data-code")
    text = await page.text_content("#rtc-error")
    assert code in ("server_shutdown", "connection_lost"), (code, text)
    assert "press Start again" in text, text
    await screenshot(page, "failed")


async def test_unknown_stream_from_the_client(site_url, page):
    await page.goto(f"{site_url}/rtc/")
    error = await page.evaluate("""async () => {
      const { connect } = await import("/static/django_rtcstream/rtcstream.js");
      try { await connect("/rtc/no-such-stream/"); return null; }
      catch (e) { return { name: e.name, code: e.code, status: e.status, message: e.message }; }
    }""")
    assert error["name"] == "RTCStreamError" and error["code"] == "unknown_stream"
    assert error["status"] == 404
    assert 'There is no stream called "no-such-stream"' in error["message"]


async def test_http_offer_when_websocket_is_blocked(site_url, page):
    """Without a WebSocket the client negotiates over the HTTP offer, and hangs up over it."""
    from django_rtcstream.models import StreamSession

    await page.add_init_script(BLOCK_WEBSOCKET)
    await start(page, site_url, "flip")
    assert await page.evaluate("() => window.rtcstreamPage.client.signaling") == "http"
    await wait_for(
        lambda: bands(page, "rtc-remote-video"),
        lambda b: b["bottom"] > 180,
        "flipped frames over the HTTP-negotiated session",
    )
    webrtc_id = await page.evaluate("() => window.rtcstreamPage.client.webrtcId")
    await page.click("#rtc-start")
    await page.wait_for_selector("#rtcstream-page[data-state='closed']")

    async def reason():
        record = await StreamSession.objects.filter(webrtc_id=webrtc_id).afirst()
        return record.close_reason if record else None

    assert await wait_for(reason, lambda r: r == "client_hangup", "the server to close it")


async def test_invalid_input_is_explained(site_url, page):
    await start(page, site_url, "gain")
    error = await page.evaluate("""async () => {
      try { await window.rtcstreamPage.client.setInput({ level: 5 }); return null; }
      catch (e) { return { code: e.code, message: e.message }; }
    }""")
    assert error["code"] == "invalid_input"
    assert "less than or equal to 1" in error["message"], error


async def test_handler_failure(site_url, page, screenshot):
    """faulty raises on its sixth frame: the session ends and the page says so."""
    code, text = await failed_with(page, f"{site_url}/rtc/faulty/")
    assert code == "handler_error"
    # The error message comes first ("reported an error"); the close that follows it
    # replaces the text: wait for it rather than racing it.
    await page.wait_for_function(
        "document.querySelector('#rtc-error').textContent.includes('handler failed')",
        timeout=15_000,
    )
    text = await page.text_content("#rtc-error")
    assert "handler failed" in text and "press Start to try again" in text.replace("Press", "press")
    await screenshot(page, "failed")
