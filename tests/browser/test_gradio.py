"""The Gradio UI, mounted in the Django ASGI application, streams over the app's WebRTC."""

from __future__ import annotations

import os

import pytest
from django.conf import settings
from django.test import override_settings

from tests.browser.conftest import ROOT, serve
from tests.browser.helpers import bands, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def gradio_installed():
    try:
        import gradio  # noqa: F401
    except ImportError:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("gradio is not installed; CI must test the Gradio UI.", pytrace=False)
        pytest.skip("gradio is not installed (pip install -e '.[gradio]').")


@pytest.fixture
async def gradio_site(gradio_installed, transactional_db):
    streams = {**settings.RTCSTREAM["STREAMS"], "ui-outputs": "tests.browser.streams.ui_outputs"}
    with override_settings(RTCSTREAM={**settings.RTCSTREAM, "STREAMS": streams}):
        from tests.browser.asgi import build_application

        url, stop = await serve(build_application(gradio_streams=["gain", "ui-outputs"]))
        try:
            yield url
        finally:
            await stop()


async def ui_start(page, url: str, stream: str) -> None:
    await page.goto(url)
    button = page.locator(f"#rtcstream-{stream} .rtc-start")
    await button.wait_for()
    await page.wait_for_function(
        f"() => !document.querySelector('#rtcstream-{stream} .rtc-start').disabled")
    await button.click()
    try:
        await page.wait_for_selector(f"#rtcstream-{stream} .rtcstream-ui[data-state='connected']")
    except Exception:
        error = await page.text_content(f"#rtcstream-{stream} .rtc-error")
        raise AssertionError(f"the Gradio UI of {stream} did not connect: {error!r}, "
                             f"console={page.console_messages[-10:]}") from None


async def client_stats(page, stream: str):
    return await page.evaluate(f"() => window.__rtcstreamUI[{stream!r}].client.stats()")


async def test_gradio_ui_streams_inputs_and_outputs(gradio_site, page, screenshot):
    remote = "#rtcstream-ui-outputs video.rtc-remote"
    await ui_start(page, f"{gradio_site}/rtc/ui-outputs/ui/", "ui-outputs")
    assert await page.evaluate("() => window.__rtcstreamUI['ui-outputs'].client.signaling") \
        == "websocket", "media negotiates through the app's signaling"
    first = await wait_for(lambda: client_stats(page, "ui-outputs"),
                           lambda s: s["video"]["framesDecoded"] > 0, "decoded frames")
    await wait_for(lambda: client_stats(page, "ui-outputs"),
                   lambda s: s["video"]["framesDecoded"] > first["video"]["framesDecoded"] + 20,
                   "framesDecoded to grow")
    await wait_for(lambda: bands(page, remote), lambda b: b["top"] > 180, "the card at Level 1")

    # Outputs: additional_outputs_handler fills the Number and the Textbox.
    frames = page.get_by_label("Frames")
    history = page.get_by_label("History")
    await wait_for(frames.input_value, lambda v: v and float(v) >= 10, "the Frames output")
    await wait_for(history.input_value, lambda v: len(v.split()) >= 2,
                   "History to accumulate (the handler sees the current value)")
    counts = [int(x) for x in (await history.input_value()).split()]
    assert counts == sorted(counts) and all(c % 10 == 0 for c in counts), counts

    # Inputs: the Gradio slider goes to the running handler through the input hook.
    await page.get_by_label("number input for Level").fill("0")
    await page.get_by_label("number input for Level").press("Enter")
    await wait_for(lambda: bands(page, remote), lambda b: b["top"] < 20,
                   "black frames after Level = 0")
    await screenshot(page, "ui-outputs")

    await page.click("#rtcstream-ui-outputs .rtc-start")
    await page.wait_for_selector("#rtcstream-ui-outputs .rtcstream-ui[data-state='closed']")


async def test_gradio_ui_for_declarations_of_the_app(gradio_site, page, screenshot):
    """gain declares its input with django_rtcstream.Slider: the UI makes a gr.Slider of it."""
    remote = "#rtcstream-gain video.rtc-remote"
    await ui_start(page, f"{gradio_site}/rtc/gain/ui/", "gain")
    await wait_for(lambda: bands(page, remote), lambda b: b["top"] > 180, "the card at Level 1")
    await page.get_by_label("number input for Level").fill("0")
    await page.get_by_label("number input for Level").press("Enter")
    await wait_for(lambda: bands(page, remote), lambda b: b["top"] < 20, "black frames")
    await screenshot(page, "gain")
    # The Django routes beside the UI are untouched.
    response = await page.goto(f"{gradio_site}/rtc/gain/")
    assert response.status == 200 and await page.text_content("h1") == "gain"


async def test_gradio_ui_launch_standalone(gradio_installed, page, tmp_path, screenshot):
    """``stream.ui.launch()`` in a process of its own serves the UI at / with the
    app's signaling beside it."""
    import asyncio
    import sys
    import time
    import urllib.request

    from tests.conftest import free_port

    port = free_port()
    env = {**os.environ, "RTCSTREAM_STANDALONE_DB": str(tmp_path / "standalone.sqlite3"),
           "DJANGO_SETTINGS_MODULE": "tests.browser.settings_standalone"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.browser.standalone_ui", "flip", str(port),
        cwd=str(ROOT), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"

    def up() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        deadline = time.monotonic() + 60
        while not await asyncio.to_thread(up):
            if process.returncode is not None or time.monotonic() > deadline:
                output = await process.stdout.read()
                raise AssertionError(f"launch() did not serve {url}: {output.decode()[-2000:]}")
            await asyncio.sleep(0.3)
        await ui_start(page, url, "flip")
        await wait_for(lambda: bands(page, "#rtcstream-flip video.rtc-remote"),
                       lambda b: b["bottom"] > 180 and b["top"] < 60, "flipped frames")
        await screenshot(page, "flip")
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 20)
