"""The Gradio mount's ASGI plumbing, without a browser: routing and lifespan."""

from __future__ import annotations

import asyncio
import sys

import pytest

from django_rtcstream.contrib.gradio.asgi import PathDispatcher, lifespan_fanout


class Recorder:
    """An ASGI app that notes what it was called with; optionally no lifespan."""

    def __init__(self, name: str, lifespan: bool = True, fail_startup: bool = False) -> None:
        self.name, self.lifespan, self.fail_startup = name, lifespan, fail_startup
        self.calls: list[str] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            if not self.lifespan:
                raise ValueError("no lifespan here")  # what plain Django does
            while True:
                message = await receive()
                self.calls.append(message["type"])
                if message["type"] == "lifespan.startup":
                    await send(
                        {"type": "lifespan.startup.failed", "message": "boom"}
                        if self.fail_startup
                        else {"type": "lifespan.startup.complete"}
                    )
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        self.calls.append(scope["path"])


async def run_lifespan(app):
    inbox: asyncio.Queue = asyncio.Queue()
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    task = asyncio.ensure_future(app({"type": "lifespan"}, inbox.get, send))
    await inbox.put({"type": "lifespan.startup"})
    await inbox.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(task, 5)
    return [m["type"] for m in sent]


async def test_dispatcher_routes_by_path():
    django, gradio = Recorder("django"), Recorder("gradio")
    app = PathDispatcher(
        django, gradio, lambda p: p == "/rtc/flip/ui" or p.startswith("/rtc/flip/ui/")
    )
    for path in (
        "/rtc/flip/ui",
        "/rtc/flip/ui/gradio_api/queue/join",
        "/rtc/flip/",
        "/rtc/flip/uix",
        "/ws/rtc/flip/",
    ):
        await app({"type": "http", "path": path}, None, None)
    assert gradio.calls == ["/rtc/flip/ui", "/rtc/flip/ui/gradio_api/queue/join"]
    assert django.calls == ["/rtc/flip/", "/rtc/flip/uix", "/ws/rtc/flip/"]


async def test_lifespan_reaches_every_app_that_takes_it():
    plain, gradio = Recorder("plain", lifespan=False), Recorder("gradio")
    app = PathDispatcher(plain, gradio, lambda p: False)
    assert await run_lifespan(app) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert gradio.calls == ["lifespan.startup", "lifespan.shutdown"]


async def test_failed_startup_fails_the_whole():
    sent = []
    inbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})

    async def send(message):
        sent.append(message)

    await asyncio.wait_for(
        lifespan_fanout(
            [Recorder("a"), Recorder("b", fail_startup=True)], {"type": "lifespan"}, inbox.get, send
        ),
        5,
    )
    assert sent == [{"type": "lifespan.startup.failed", "message": "boom"}]


def test_the_app_does_not_import_gradio():
    """gradio is an optional extra: only django_rtcstream.contrib.gradio's modules import it."""
    import subprocess

    code = (
        "import os, sys, django; os.environ['DJANGO_SETTINGS_MODULE']='tests.settings'; "
        "django.setup(); import django_rtcstream.urls, django_rtcstream.pages, "
        "django_rtcstream.contrib.gradio; from django_rtcstream.registry import get_streams; "
        "get_streams(); print('gradio' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_stream_ui_is_a_gradio_blocks():
    """Checked in a subprocess: this process must not import gradio (see test_stream.py)."""
    import importlib.util
    import json
    import subprocess

    if importlib.util.find_spec("gradio") is None:
        pytest.skip("gradio is not installed (pip install -e '.[gradio]').")
    code = """
import json, os, django
os.environ['DJANGO_SETTINGS_MODULE'] = 'tests.settings'
django.setup()
import gradio as gr
from django_rtcstream.registry import get_stream
stream = get_stream('echo')
ui = stream.ui
media = [b for b in ui.blocks.values() if isinstance(b, gr.HTML) and 'rtcstream-ui' in str(b.value)]
sliders = [(s.label, s.minimum, s.maximum, s.value) for s in ui.blocks.values()
           if isinstance(s, gr.Slider)]
print(json.dumps({'blocks': isinstance(ui, gr.Blocks), 'same': stream.ui is ui,
                  'stream': ui.rtc_stream is stream, 'media': [m.value for m in media],
                  'sliders': sliders}))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["blocks"] and info["same"] and info["stream"]
    assert len(info["media"]) == 1
    assert "rtc-meter-remote" in info["media"][0] and "<audio" in info["media"][0]
    assert info["sliders"] == [["Gain", 0, 1, 1.0]]
