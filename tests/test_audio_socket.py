"""Audio over WebSocket (FastRTC's protocol and the PCM16 variant) on the live server."""

from __future__ import annotations

import asyncio
import base64
import json
import math

import numpy as np
import pytest
import websockets

from django_rtcstream.client import SignalingFailed, StreamClient, ToneAudioTrack, http_json
from django_rtcstream.media import mulaw
from django_rtcstream.models import StreamSession
from django_rtcstream.registry import get_stream
from tests import streams

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.media]


def tone(frequency, rate, seconds, amplitude=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * math.pi * frequency * t) * amplitude * 32767).astype(np.int16)


def dominant(samples, rate):
    x = samples.astype(np.float32) / 32768
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spectrum))]), float(
        np.sqrt(np.mean(x**2))
    )


class AudioSocket:
    """A FastRTC-protocol client: JSON events, base64 mu-law (or binary PCM16)."""

    def __init__(self, server, stream):
        port = server.rsplit(":", 1)[1]
        self.url = f"ws://127.0.0.1:{port}/ws/rtc/{stream}/websocket/offer"
        self.origin = server
        self.audio = []
        self.messages = []
        self.session = None

    async def __aenter__(self):
        self.ws = await websockets.connect(self.url, origin=self.origin)
        self.reader = asyncio.ensure_future(self._read())
        return self

    async def __aexit__(self, *exc):
        self.reader.cancel()
        await self.ws.close()

    async def _read(self):
        try:
            async for raw in self.ws:
                if isinstance(raw, bytes):
                    self.audio.append(np.frombuffer(raw, "<i2"))
                    continue
                message = json.loads(raw)
                if message.get("event") == "media":
                    self.audio.append(mulaw.decode(base64.b64decode(message["media"]["payload"])))
                else:
                    self.messages.append(message)
                    if message.get("type") == "session":
                        self.session = message["data"]
        except websockets.ConnectionClosed:
            return

    async def send(self, data):
        await self.ws.send(json.dumps(data) if isinstance(data, dict) else data)

    async def start(self, webrtc_id=None, **options):
        await self.send({"event": "start", "websocket_id": webrtc_id, **options})
        for _ in range(100):
            if self.session or any(m.get("status") == "failed" for m in self.messages):
                return self.session
            await asyncio.sleep(0.02)
        raise AssertionError(f"no session: {self.messages}")

    async def play(self, samples, rate, pcm16=False):
        """Send samples in 20 ms messages at real time."""
        step = rate // 50
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(0, len(samples) - step + 1, step):
            chunk = samples[i : i + step]
            if pcm16:
                await self.send(chunk.astype("<i2").tobytes())
            else:
                await self.send(
                    {
                        "event": "media",
                        "media": {"payload": base64.b64encode(mulaw.encode(chunk)).decode()},
                    }
                )
            await asyncio.sleep(max(0, start + (i // step + 1) * 0.02 - loop.time()))

    def received(self):
        return np.concatenate(self.audio) if self.audio else np.zeros(0, np.int16)

    def of_type(self, kind):
        return [m for m in self.messages if m.get("type") == kind]


async def test_a_1khz_tone_at_16khz_comes_back_at_the_handlers_output_rate(asgi_server):
    async with AudioSocket(asgi_server, "echo") as client:
        session = await client.start("ws-tone", sample_rate=16000)
        assert session["input_sample_rate"] == 16000 and session["output_sample_rate"] == 48000
        await client.play(tone(1000, 16000, 1.5), 16000)
        await asyncio.sleep(0.3)
        back = client.received()
    assert len(back) > 48000  # more than a second of audio at 48 kHz
    frequency, level = dominant(back[-24000:], 48000)
    assert abs(frequency - 1000) < 10 and level > 0.2, (frequency, level)


async def test_pcm16_variant_in_binary_frames(asgi_server):
    async with AudioSocket(asgi_server, "echo") as client:
        await client.start("ws-pcm", encoding="pcm16", sample_rate=16000, output_sample_rate=16000)
        await client.play(tone(1000, 16000, 1.0), 16000, pcm16=True)
        await asyncio.sleep(0.3)
        back = client.received()
    frequency, level = dominant(back[-8000:], 16000)
    assert abs(frequency - 1000) < 10 and level > 0.3  # 16-bit: no mu-law loss


async def test_receive_mode_generator_over_websocket(asgi_server):
    async with AudioSocket(asgi_server, "tone") as client:
        await client.start("ws-gen", output_sample_rate=8000)
        await asyncio.sleep(1.0)
        back = client.received()
    assert 0.6 * 8000 < len(back) < 1.4 * 8000  # paced at real time, not faster
    assert abs(dominant(back, 8000)[0] - 440) < 10


async def test_stop_ends_the_session_and_shutdown_runs(asgi_server):
    async with AudioSocket(asgi_server, "echo") as client:
        session = await client.start("ws-stop")
        await client.send({"event": "stop"})
        await asyncio.sleep(0.5)
    record = await StreamSession.objects.aget(webrtc_id=session["webrtc_id"])
    assert (record.channel, record.state, record.close_reason) == (
        "websocket",
        "closed",
        "client_stopped",
    )
    assert [e for i, e in streams.EVENTS if i == "ws-stop"] == ["start_up", "shutdown"]


async def test_stop_or_disconnect_before_start_is_harmless(asgi_server):
    async with AudioSocket(asgi_server, "echo") as client:
        await client.send({"event": "stop"})
    async with AudioSocket(asgi_server, "echo"):
        pass
    async with AudioSocket(asgi_server, "echo") as client:
        await client.send({"event": "ping"})
        await asyncio.sleep(0.2)
        assert {"event": "pong"} in client.messages
    assert not await StreamSession.objects.aexists()


async def test_a_duplicate_id_is_refused_not_overwritten(asgi_server):
    async with (
        AudioSocket(asgi_server, "echo") as first,
        AudioSocket(asgi_server, "echo") as second,
    ):
        await first.start("dup1", sample_rate=16000)
        await second.start("dup1")
        await asyncio.sleep(0.2)
        assert second.messages[-1]["meta"]["error"] == "connection_already_exists"
        assert second.ws.close_code == 4409
        await first.play(tone(1000, 16000, 0.6), 16000)
        await asyncio.sleep(0.3)
        assert len(first.received()) > 0
    assert await StreamSession.objects.filter(webrtc_id="dup1").acount() == 1


async def test_limits_count_websocket_and_webrtc_sessions_together(asgi_server, rtc_url):
    async with AudioSocket(asgi_server, "limited") as client:
        await client.start("ws-limit")
        with pytest.raises(SignalingFailed) as full:
            await StreamClient(rtc_url, "limited", audio=ToneAudioTrack()).connect()
        assert full.value.code == "concurrency_limit_reached"
    await asyncio.sleep(0.3)
    async with (
        StreamClient(rtc_url, "limited", audio=ToneAudioTrack()),
        AudioSocket(asgi_server, "limited") as refused,
    ):
        await refused.start("ws-limit2")
        await asyncio.sleep(0.2)
        assert refused.messages[-1] == {
            "status": "failed",
            "meta": {
                "error": "concurrency_limit_reached",
                "limit": 1,
                "message": refused.messages[-1]["meta"]["message"],
            },
        }
        assert refused.ws.close_code == 4429


async def test_inputs_and_outputs_through_the_hooks(asgi_server, rtc_url):
    async with AudioSocket(asgi_server, "echo") as client:
        session = await client.start("ws-input", sample_rate=16000)
        await client.play(tone(1000, 16000, 0.6), 16000)
        status, reply = await http_json(
            f"{rtc_url}echo/input",
            {"webrtc_id": "ws-input", "token": session["token"], "gain": 0.0},
        )
        assert status == 200, reply
        client.audio.clear()
        await client.play(tone(1000, 16000, 0.8), 16000)
        await asyncio.sleep(0.2)
        assert dominant(client.received()[-9600:], 48000)[1] < 0.01
    async with AudioSocket(asgi_server, "audio-send") as client:
        await client.start("ws-out", sample_rate=8000)
        stream = get_stream("audio-send")
        play = asyncio.ensure_future(client.play(tone(300, 8000, 2.0), 8000))
        output = await stream.fetch_latest_output("ws-out", timeout=5)
        await play
        assert output.args[0] % 25 == 0
        assert client.of_type("fetch_output")


BAD = [
    ("not json", "must be JSON"),
    (json.dumps([1, 2]), "JSON objects with an 'event'"),
    (json.dumps({"event": "dance"}), "Unknown event 'dance'"),
    (json.dumps({"event": "media", "media": {"payload": "***"}}), "not valid base64"),
    (json.dumps({"event": "media", "media": {}}), "base64 string"),
    (b"\x00\x01\x02", "Binary frames carry PCM16"),
    ("x" * 300_000, "the limit is"),
    (
        json.dumps(
            {"event": "media", "media": {"payload": base64.b64encode(b"\xff" * 40000).decode()}}
        ),
        "at most 2 s of audio",
    ),
]


async def test_bad_messages_get_errors_and_the_session_goes_on(asgi_server):
    async with AudioSocket(asgi_server, "echo") as client:
        await client.start("ws-bad", sample_rate=16000)
        for raw, expected in BAD:
            before = len(client.of_type("error"))
            await client.send(raw)
            for _ in range(50):
                if len(client.of_type("error")) > before:
                    break
                await asyncio.sleep(0.02)
            assert expected in client.of_type("error")[-1]["data"], (raw[:40], client.messages[-1])
        client.audio.clear()
        await client.play(tone(1000, 16000, 0.8), 16000)
        await asyncio.sleep(0.2)
        assert abs(dominant(client.received()[-9600:], 48000)[0] - 1000) < 10


async def test_a_video_stream_refuses_websocket_audio(asgi_server):
    async with AudioSocket(asgi_server, "flip") as client:
        await asyncio.sleep(0.2)
        assert client.messages[0]["meta"]["error"] == "unsupported_modality"
        assert client.ws.close_code == 4400


async def test_a_handler_sees_its_websocket_in_the_context(asgi_server, rtc_url):
    async with AudioSocket(asgi_server, "socket_aware") as sock:
        session = await sock.start("ctx-1", encoding="pcm16", sample_rate=16000)
        assert session is not None, sock.messages
        webrtc_id = session["webrtc_id"]
        for _ in range(200):
            if any(i == webrtc_id for i, _ in streams.EVENTS):
                break
            await asyncio.sleep(0.02)
    assert (webrtc_id, "websocket:AudioSocketConsumer") in streams.EVENTS
    async with StreamClient(rtc_url, "socket_aware", audio=ToneAudioTrack()) as client:
        for _ in range(200):
            if any(i == client.webrtc_id for i, _ in streams.EVENTS):
                break
            await asyncio.sleep(0.02)
        assert (client.webrtc_id, "websocket:NoneType") in streams.EVENTS  # WebRTC: no socket


async def _closed_record(webrtc_id, within=10.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        record = await StreamSession.objects.aget(webrtc_id=webrtc_id)
        if record.closed_at is not None:
            return record
        await asyncio.sleep(0.05)
    raise AssertionError(f"session {webrtc_id} still open {within:g} s after its client left")


async def test_a_handler_that_swallows_its_cancellation_does_not_keep_the_session_open(
    asgi_server,
):
    # Python 3.11's asyncio.wait_for swallows a cancellation that comes with its result;
    # the close cancels again, so the session, its record and the client's call end.
    async with AudioSocket(asgi_server, "swallows_cancel") as client:
        session = await client.start("ws-swallow")
        await client.play(tone(440, 48000, 0.2), 48000)
    record = await _closed_record(session["webrtc_id"])
    assert record.close_reason == "client_disconnected"
    assert [e for i, e in streams.EVENTS if i == "ws-swallow"] == ["swallowed"]


async def test_a_handler_that_ignores_every_cancellation_is_left_behind_and_logged(
    asgi_server, monkeypatch, caplog
):
    from django_rtcstream.sessions import runtime

    monkeypatch.setattr(runtime, "CANCEL_GRACE", 0.2)
    monkeypatch.setattr(runtime, "CANCEL_LIMIT", 0.6)
    streams.IGNORE_CANCELS[0] = True
    try:
        async with AudioSocket(asgi_server, "ignores_cancel") as client:
            session = await client.start("ws-ignore")
        record = await _closed_record(session["webrtc_id"])
    finally:
        streams.IGNORE_CANCELS[0] = False  # the task left behind may end now
    assert record.close_reason == "client_disconnected"
    assert streams.EVENTS.count(("ws-ignore", "swallowed")) >= 2  # cancelled again, and again
    assert any(
        "ws-ignore" in r.getMessage() and "still running" in r.getMessage() for r in caplog.records
    )
