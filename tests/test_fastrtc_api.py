"""FastRTC's names and behaviour that ported programs rely on (issue: programs run unchanged)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import websockets
from django.core.exceptions import ImproperlyConfigured

from django_rtcstream import Number, Slider, Stream, StreamHandler, VideoStreamHandler
from django_rtcstream.client import StreamClient, SyntheticVideoTrack, http_json
from django_rtcstream.exceptions import UnknownSession
from django_rtcstream.handlers import ArgsSet
from django_rtcstream.inputs import InputSchema
from django_rtcstream.registry import get_stream
from tests.media import collect, mean_brightness

media = [pytest.mark.django_db(transaction=True), pytest.mark.media]


# -- Gradio under the README's setup (daphne in INSTALLED_APPS) -------------------------------


def test_gradio_components_build_with_daphne_installed():
    # tests/settings.py lists daphne first, as the README says: Twisted is loaded.
    assert "twisted.internet.base" in sys.modules
    import gradio as gr

    slider = gr.Slider(minimum=1, maximum=10, step=1, value=2, label="Steps")
    schema = InputSchema([slider, gr.Number(value=3, precision=0), gr.Checkbox(label="On")])
    assert schema.defaults() == [2, 3, False]
    assert [type(v) for v in schema.defaults()] == [int, int, bool]


def test_the_example_projects_gradio_ui_builds_under_its_own_settings():
    code = textwrap.dedent("""
        import django, sys
        django.setup()
        assert "twisted.internet.base" in sys.modules
        from django_rtcstream.registry import get_stream
        ui = get_stream("brightness").ui
        print(type(ui).__name__)
    """)
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "DJANGO_SETTINGS_MODULE": "example_project.settings"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "StreamBlocks"


def test_stream_ui_serves_a_stream_that_is_not_in_the_settings():
    def invert(frame):
        return 255 - frame

    stream = Stream(invert, modality="video", mode="send-receive")
    assert stream.name is None
    blocks = stream.ui
    assert type(blocks).__name__ == "StreamBlocks"
    assert stream.name == "invert" and get_stream("invert") is stream
    other = Stream(invert, modality="video", mode="send-receive")
    other.ui  # noqa: B018
    assert other.name == "invert-2"


@pytest.mark.django_db(transaction=True)
async def test_an_unregistered_streams_routes_are_served_beside_its_ui(rtc_url):
    def darken(frame):
        return (frame // 4).astype(np.uint8)

    stream = Stream(darken, modality="video", mode="send-receive")
    await asyncio.to_thread(lambda: stream.ui)
    async with StreamClient(rtc_url, stream.name, video=SyntheticVideoTrack()) as client:
        frame = (await collect(client.video_frames, 3))[-1]
        assert mean_brightness(frame) < 70


# -- integer inputs ---------------------------------------------------------------------------


def test_integer_stepped_sliders_and_whole_numbers_give_ints():
    schema = InputSchema(
        [
            Slider(1, 10, step=1, value=2),
            Number(value=1, precision=0),
            Slider(0, 1, value=0.5),
            Slider(0, 100),
            Number(value=2.5),
        ]
    )
    assert schema.clean_args([3, 4.0, 0.25, 50, 7]) == [3, 4, 0.25, 50, 7]
    assert [type(v) for v in schema.clean_args(["3", 4.0, 1, 50.0, 7.5])] == [
        int,
        int,
        float,
        int,
        float,
    ]
    with pytest.raises(ValueError):
        schema.clean_args([2.5, 1, 0, 0, 0])
    assert [s.describe()["type"] for s in schema.specs] == [
        "integer",
        "integer",
        "number",
        "integer",
        "number",
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.media
async def test_an_integer_slider_reaches_a_generator_as_an_int(rtc_url):
    # steps(num_steps) runs range(num_steps): a float would raise TypeError.
    async with StreamClient(rtc_url, "int_steps") as client:
        await collect(client.video_frames, 3)
        assert await client.set_input(steps=4) == {"status": "success", "inputs": {"steps": 4}}
        frames = await collect(client.video_frames, 12)
        assert 150 < mean_brightness(frames[-1]) <= 255


# -- WebRTCError, set_input, the input hook's positional form --------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.media
async def test_webrtc_error_reaches_the_client_as_its_message_and_ends_the_session(rtc_url, caplog):
    from django_rtcstream.models import StreamSession

    with caplog.at_level(logging.WARNING):
        client = StreamClient(rtc_url, "refuse", video=SyntheticVideoTrack())
        await client.connect()
        try:
            message = await client.next_message("error", timeout=10)
            text = "No face in view: move closer to the camera"
            assert (message["data"], message["message"]) == (text, text)
            for _ in range(200):
                record = await StreamSession.objects.filter(webrtc_id=client.webrtc_id).afirst()
                if not record.is_live:
                    break
                await asyncio.sleep(0.05)
            assert (record.state, record.close_reason) == ("failed", "handler_error: WebRTCError")
        finally:
            await client.close()
    assert "Traceback" not in caplog.text


@pytest.mark.django_db(transaction=True)
async def test_set_input_for_an_unknown_session_raises_at_once(rtc_url, caplog):
    stream = get_stream("gain")
    with pytest.raises(UnknownSession):
        stream.set_input("no-such-session", 0.5)  # from a running loop: no stray task
    with pytest.raises(UnknownSession):
        await asyncio.to_thread(stream.set_input, "no-such-session", 0.5)  # from sync code
    status, body = await http_json(
        f"{rtc_url}gain/input", {"webrtc_id": "no-such-session", "level": 0.5}
    )
    assert status == 404 and body["meta"]["error"] == "unknown_connection"
    await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text


@pytest.mark.django_db(transaction=True)
@pytest.mark.media
async def test_the_input_hook_takes_fastrtcs_positional_args(rtc_url):
    async with StreamClient(rtc_url, "gain", video=SyntheticVideoTrack(marker_rows=240)) as client:
        body = {"webrtc_id": client.webrtc_id, "token": client.token}
        status, reply = await http_json(client.url("input"), {**body, "args": [0.25]})
        assert (status, reply) == (200, {"status": "success", "inputs": {"level": 0.25}})
        status, reply = await http_json(client.url("input"), {**body, "args": [0.25, 1]})
        assert status == 400 and "args" in reply["errors"]
        status, reply = await http_json(client.url("input"), {**body, "args": [2.0]})
        assert status == 400 and "level" in reply["errors"]
        status, reply = await http_json(client.url("input"), {**body, "args": [0.5], "level": 1})
        assert status == 400


# -- WebSockets without an Origin ----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_websockets_without_an_origin_are_accepted_and_foreign_ones_refused(asgi_server):
    port = asgi_server.rsplit(":", 1)[1]
    for path in ("/ws/rtc/flip/", "/rtc/echo/websocket/offer"):
        url = f"ws://127.0.0.1:{port}{path}"
        async with websockets.connect(url) as ws:  # the websockets library sends no Origin
            await ws.send('{"type": "ping"}' if "ws/rtc" in path else '{"event": "ping"}')
            reply = await asyncio.wait_for(ws.recv(), 5)
            assert "pong" in reply, reply
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(url, origin="http://evil.example"):
                pass
        assert refused.value.response.status_code == 403


# -- the rest of FastRTC's surface ---------------------------------------------------------


def test_mount_and_fastphone_say_how_to_serve_the_stream_in_django():
    stream = Stream(lambda frame: frame, modality="video", mode="send-receive")
    with pytest.raises(ImproperlyConfigured, match=r"include\('django_rtcstream\.urls'\)"):
        stream.mount(object())
    with pytest.raises(ImproperlyConfigured, match="telephone/incoming"):
        stream.fastphone()


def test_fastrtc_names_are_exported():
    import django_rtcstream
    from django_rtcstream import utils

    for name in (
        "WebRTCError",
        "Warning",
        "wait_for_item",
        "audio_to_bytes",
        "audio_to_file",
        "audio_to_float32",
        "audio_to_int16",
        "aggregate_bytes_to_16bit",
        "async_aggregate_bytes_to_16bit",
        "get_cloudflare_turn_credentials",
        "get_cloudflare_turn_credentials_async",
        "get_twilio_turn_credentials",
        "get_hf_turn_credentials",
    ):
        assert getattr(django_rtcstream, name) is not None, name
    assert utils.wait_for_item is django_rtcstream.wait_for_item


class _Plain(StreamHandler):
    def receive(self, frame):
        pass

    def emit(self):
        return None

    def copy(self):
        return _Plain()


def test_wait_for_args_follows_fastrtc_and_gives_up():
    handler = _Plain()
    sent = []

    class Port:
        loop = None
        ended = False

        def send_message(self, message):
            sent.append(message)

    handler._attach(Port())
    assert handler.wait_for_args_sync(timeout=0.05) is False  # nobody answered
    assert sent == [{"type": "send_input", "data": []}]
    handler.set_args([0.5])
    assert handler.args_set.is_set() and handler.latest_args == ["__webrtc_value__", 0.5]
    assert handler.wait_for_args_sync(timeout=0.05) is True and len(sent) == 1  # already set
    handler.reset()
    assert not handler.args_set.is_set()
    handler.phone_mode = True
    assert handler.wait_for_args_sync() is True
    handler.channel.send('{"type": "log", "data": "hi"}')
    handler.channel.send("plain text")
    assert sent[-2:] == [{"type": "log", "data": "hi"}, {"type": "log", "data": "plain text"}]


def test_args_set_waiters_wake_when_the_session_ends():
    import threading

    flag, ended = ArgsSet(), threading.Event()
    result = []
    thread = threading.Thread(target=lambda: result.append(flag.wait_sync(None, ended.is_set)))
    thread.start()
    ended.set()
    flag.wake()
    thread.join(5)
    assert result == [False]


def test_video_stream_handler_keeps_fastrtcs_skip_frames_default():
    assert VideoStreamHandler(lambda f: f).skip_frames is False
    assert get_stream("in_order").handler.skip_frames is False


@pytest.mark.django_db(transaction=True)
@pytest.mark.media
async def test_skip_frames_false_hands_a_slow_function_every_frame_in_order(rtc_url):
    # slow_flip takes 0.1 s a frame: with skip_frames=False it falls behind, in order,
    # by at most a second of frames; the latest-frame policy would skip most of them.
    from django_rtcstream.sessions.manager import manager

    async with StreamClient(rtc_url, "in_order", video=SyntheticVideoTrack()) as client:
        await collect(client.video_frames, 10, timeout=15)
        session = manager().get(client.webrtc_id)
        source = session.pipelines.video_in
        assert type(source).__name__ == "EveryFrame" and source.limit == 30
        assert len(source._frames) > 5  # a backlog builds, bounded
        assert len(source._frames) <= 30
