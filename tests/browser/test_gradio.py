"""The Gradio UI, mounted in the Django ASGI application, streams over the app's WebRTC.

The UI's server runs in a process of its own (``tests/browser/serve_ui.py``):
the test process never imports gradio, which other tests check the app does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import sys
import time
import urllib.request

import pytest
import pytest_asyncio

from tests.browser.conftest import ROOT
from tests.browser.helpers import bands, wait_for
from tests.conftest import free_port


@pytest.fixture
def gradio_installed():
    if importlib.util.find_spec("gradio") is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("gradio is not installed; CI must test the Gradio UI.", pytrace=False)
        pytest.skip("gradio is not installed (pip install -e '.[gradio]').")


@contextlib.asynccontextmanager
async def ui_server(tmp_path, *args: str):
    """Run ``tests.browser.serve_ui`` with ``args`` on a free port; yields its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "RTCSTREAM_STANDALONE_DB": str(tmp_path / "ui.sqlite3"),
        "DJANGO_SETTINGS_MODULE": "tests.browser.settings_standalone",
    }
    argv = [a if a != "{port}" else str(port) for a in args]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.browser.serve_ui",
        *argv,
        cwd=str(ROOT),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/rtc/", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        deadline = time.monotonic() + 90
        while not await asyncio.to_thread(up):
            if process.returncode is not None or time.monotonic() > deadline:
                if process.returncode is None:
                    process.kill()
                output = await process.stdout.read()
                raise AssertionError(
                    f"serve_ui {args} did not serve {url}: {output.decode()[-3000:]}"
                )
            await asyncio.sleep(0.3)
        yield url
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 20)
            except asyncio.TimeoutError:
                process.kill()


@pytest_asyncio.fixture(loop_scope="package")  # the loop of the tests here (conftest)
async def gradio_site(gradio_installed, tmp_path):
    """The test project with the UIs of gain and ui-outputs mounted at /rtc/<stream>/ui/."""
    async with ui_server(tmp_path, "mount", "{port}", "gain", "ui-outputs") as url:
        yield url


async def ui_start(page, url: str, stream: str) -> None:
    await page.goto(url)
    button = page.locator(f"#rtcstream-{stream} .rtc-start")
    await button.wait_for()
    await page.wait_for_function(
        f"() => !document.querySelector('#rtcstream-{stream} .rtc-start').disabled"
    )
    await button.click()
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    try:
        await page.wait_for_selector(f"#rtcstream-{stream} .rtcstream-ui[data-state='connected']")
    except PlaywrightTimeout:
        error = await page.text_content(f"#rtcstream-{stream} .rtc-error")
        raise AssertionError(
            f"the Gradio UI of {stream} did not connect: {error!r}, "
            f"console={page.console_messages[-10:]}"
        ) from None


async def client_stats(page, stream: str):
    return await page.evaluate(f"() => window.__rtcstreamUI[{stream!r}].client.stats()")


async def test_gradio_ui_streams_inputs_and_outputs(gradio_site, page, screenshot):
    remote = "#rtcstream-ui-outputs video.rtc-remote"
    await ui_start(page, f"{gradio_site}/rtc/ui-outputs/ui/", "ui-outputs")
    assert (
        await page.evaluate("() => window.__rtcstreamUI['ui-outputs'].client.signaling")
        == "websocket"
    ), "media negotiates through the app's signaling"
    first = await wait_for(
        lambda: client_stats(page, "ui-outputs"),
        lambda s: s["video"]["framesDecoded"] > 0,
        "decoded frames",
    )
    await wait_for(
        lambda: client_stats(page, "ui-outputs"),
        lambda s: s["video"]["framesDecoded"] > first["video"]["framesDecoded"] + 20,
        "framesDecoded to grow",
    )
    await wait_for(lambda: bands(page, remote), lambda b: b["top"] > 180, "the card at Level 1")

    # Outputs: additional_outputs_handler fills the Number and the Textbox.
    frames = page.get_by_label("Frames")
    history = page.get_by_label("History")
    await wait_for(frames.input_value, lambda v: v and float(v) >= 10, "the Frames output")
    await wait_for(
        history.input_value,
        lambda v: len(v.split()) >= 2,
        "History to accumulate (the handler sees the current value)",
    )
    counts = [int(x) for x in (await history.input_value()).split()]
    assert counts == sorted(counts) and all(c % 10 == 0 for c in counts), counts

    # Inputs: the Gradio slider goes to the running handler through the input hook.
    await page.get_by_label("number input for Level").fill("0")
    await page.get_by_label("number input for Level").press("Enter")
    await wait_for(
        lambda: bands(page, remote), lambda b: b["top"] < 20, "black frames after Level = 0"
    )
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
    """``stream.ui.launch()`` serves the UI at / with the app's signaling beside it."""
    async with ui_server(tmp_path, "launch", "flip", "{port}") as url:
        await ui_start(page, f"{url}/", "flip")
        await wait_for(
            lambda: bands(page, "#rtcstream-flip video.rtc-remote"),
            lambda b: b["bottom"] > 180 and b["top"] < 60,
            "flipped frames",
        )
        await screenshot(page, "flip")
