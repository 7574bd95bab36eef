"""Audio programs end to end: a real server, a real aiortc client, real codecs."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from django_rtcstream.client import SignalingFailed, StreamClient, ToneAudioTrack
from django_rtcstream.registry import get_stream
from tests.fastrtc_compat.helpers import (
    outputs_of,
    sse_events,
    wait_closed,
    wait_until,
)
from tests.fastrtc_compat.programs import echo_blocking, generator_steps
from tests.media import audio_samples, collect, dominant_frequency, drain

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.media]

TONE_RMS = 0.5 / 2**0.5  # ToneAudioTrack's default amplitude, as an RMS level
# Mono becomes stereo at -3 dB (libswresample's centre mix level) in the client's
# Opus encoder, and stereo becomes mono without loss in the handler's input: what a
# handler hears. Its mono output becomes stereo at -3 dB again on the way out (in
# FastRTC too, through the same av.AudioResampler): what an echo sounds like.
HEARD_RMS = TONE_RMS / 2**0.5
ECHO_RMS = TONE_RMS / 2


async def settled_level(client, predicate, timeout=10.0, window=10, measure=50):
    """Wait (in 200 ms windows) until the echo's level satisfies ``predicate``,
    then measure ``measure`` frames: (frequency, level)."""

    async def wait():
        while True:
            _, level = dominant_frequency(await collect(client.audio_frames, window))
            if predicate(level):
                return

    await asyncio.wait_for(wait(), timeout)
    return dominant_frequency(await collect(client.audio_frames, measure))


async def test_blocking_emit_echo_returns_the_tone_and_its_session_still_ends(rtc_url):
    async with StreamClient(rtc_url, "echo_blocking", audio=ToneAudioTrack(440)) as client:
        await collect(client.audio_frames, 25)
        frequency, level = dominant_frequency(await collect(client.audio_frames, 50))
        webrtc_id = client.webrtc_id
    assert abs(frequency - 440) < 15 and abs(level - ECHO_RMS) < 0.04, (frequency, level)
    # emit() is left blocked in queue.get() for ever, yet the session closes and
    # shutdown() runs.
    closed = await wait_closed(webrtc_id)
    assert closed.state == "closed"
    await wait_until(lambda: webrtc_id in echo_blocking.closed_sessions, what="shutdown()")


async def test_async_echo_with_wait_for_item_at_24khz(rtc_url):
    async with StreamClient(rtc_url, "echo_async", audio=ToneAudioTrack(660)) as client:
        await collect(client.audio_frames, 25)
        frequency, level = dominant_frequency(await collect(client.audio_frames, 50))
    assert abs(frequency - 660) < 15 and abs(level - ECHO_RMS) < 0.04, (frequency, level)


class FakeRealtimeServer:
    """A stand-in "realtime API": JSON lines over TCP; echoes audio, sends transcripts."""

    def __init__(self):
        self.connections = []

    async def handle(self, reader, writer):
        conn = {"chunks": 0, "closed": asyncio.Event()}
        self.connections.append(conn)
        try:
            async for line in reader:
                event = json.loads(line)
                if event["type"] != "input_audio_buffer.append":
                    continue
                conn["chunks"] += 1
                replies = [{"type": "response.audio.delta", "delta": event["audio"]}]
                if conn["chunks"] % 50 == 0:
                    replies.append(
                        {"type": "transcript.done", "transcript": f"heard {conn['chunks']} chunks"}
                    )
                for reply in replies:
                    writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            conn["closed"].set()
            writer.close()


@pytest.fixture
async def realtime_server(monkeypatch):
    fake = FakeRealtimeServer()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("REALTIME_SERVER", f"127.0.0.1:{port}")
    yield fake
    server.close()


async def test_start_up_keeps_a_connection_open_and_feeds_emit(rtc_url, realtime_server):
    async with StreamClient(rtc_url, "realtime_connection", audio=ToneAudioTrack(660)) as client:
        outputs = await outputs_of("realtime_connection", client.webrtc_id, 2)
        await drain(client.audio_frames)
        frequency, level = dominant_frequency(await collect(client.audio_frames, 50))
        assert len(realtime_server.connections) == 1
        connection = realtime_server.connections[0]
        assert not connection["closed"].is_set()  # start_up() is still reading
        assert connection["chunks"] >= 100
    assert [o.args[0] for o in outputs] == ["heard 50 chunks", "heard 100 chunks"]
    assert abs(frequency - 660) < 15 and abs(level - ECHO_RMS) < 0.04, (frequency, level)
    # shutdown() closed the connection.
    await asyncio.wait_for(connection["closed"].wait(), 10)


async def test_integer_slider_reaches_the_generator_as_an_int(rtc_url):
    generator_steps.runs.clear()
    async with StreamClient(rtc_url, "generator_steps") as client:
        reply = await client.set_input(number_of_steps=3)
        assert reply == {"status": "success", "inputs": {"number_of_steps": 3}}
        with pytest.raises(SignalingFailed) as bad:
            await client.set_input(number_of_steps=2.5)
        assert bad.value.status == 400 and "number_of_steps" in bad.value.body["errors"]
        frequency, level = dominant_frequency(await collect(client.audio_frames, 50))
        end = await client.next_message("end_stream", timeout=15)
    assert end["data"] == "handler_finished"
    assert abs(frequency - 440) < 15 and level > 0.2, (frequency, level)
    # The default (2) started the generator, the input restarted it with 3: ints
    # both times (range() would have raised on a float), and it ran to its end.
    assert [run["num_steps"] for run in generator_steps.runs] == [2, 3]
    assert all(type(run["num_steps"]) is int for run in generator_steps.runs)
    assert generator_steps.runs[-1]["yielded"] == 30


async def test_webrtc_error_reaches_the_client_and_ends_the_session(rtc_url):
    async with StreamClient(rtc_url, "webrtc_error") as client:
        error = await client.next_message("error", timeout=10)
        await wait_until(
            lambda: client.pc.connectionState in ("closed", "failed"), what="the server to hang up"
        )
        webrtc_id = client.webrtc_id
        assert client.received["audio"] > 0  # the segments played before the error
    assert error["data"] == "This is a test error"
    assert error["message"] == "This is a test error"  # the key FastRTC's frontend reads
    closed = await wait_closed(webrtc_id)
    assert closed.state == "failed"


async def test_wait_for_args_waits_for_the_input_hook_then_follows_set_input(rtc_url):
    async with StreamClient(rtc_url, "wait_for_args", audio=ToneAudioTrack(440)) as client:
        await client.next_message("send_input", timeout=10)
        # start_up() waits for the client's inputs: nothing is echoed yet.
        _, level = dominant_frequency(await collect(client.audio_frames, 25))
        assert level < 0.01
        await client.set_input(volume=0.5)  # the answer to send_input, as FastRTC's page sends it
        frequency, level = await settled_level(client, lambda lv: lv > 0.05)
        assert abs(frequency - 440) < 15 and abs(level - ECHO_RMS / 2) < 0.03, level
        get_stream("wait_for_args").set_input(client.webrtc_id, 1.0)  # FastRTC's own call
        _, level = await settled_level(client, lambda lv: lv > ECHO_RMS * 0.75)
        assert abs(level - ECHO_RMS) < 0.04, level


async def test_close_stream_ends_the_session_with_its_message(rtc_url):
    async with StreamClient(rtc_url, "close_stream", audio=ToneAudioTrack(440)) as client:
        frequency, _ = dominant_frequency(await collect(client.audio_frames, 25))
        end = await client.next_message("end_stream", timeout=10)
        webrtc_id = client.webrtc_id
    assert end["data"] == "Goodbye"
    assert abs(frequency - 440) < 15
    closed = await wait_closed(webrtc_id)
    assert (closed.state, closed.close_reason) == ("closed", "closed_by_handler")


async def test_additional_outputs_from_an_audio_handler_over_sse(rtc_url):
    async with StreamClient(rtc_url, "audio_level", audio=ToneAudioTrack(440)) as client:
        events = await sse_events(client, 3)
        frequency, level = dominant_frequency(await collect(client.audio_frames, 50))
    assert abs(frequency - 440) < 15 and abs(level - ECHO_RMS) < 0.04
    # audio_to_float32 saw the decoded tone: its RMS level, reported every 25 frames.
    assert all(abs(event[0] - HEARD_RMS) < 0.04 for event in events[1:]), events
    assert get_stream("audio_level").additional_outputs_handler(None, 0.3) == 0.3


async def test_send_mode_async_handler_reports_what_it_heard(rtc_url):
    async with StreamClient(rtc_url, "transcribe", audio=ToneAudioTrack(660)) as client:
        outputs = await outputs_of("transcribe", client.webrtc_id, 2)
        assert client.received["audio"] == 0  # send mode: nothing comes back
    assert [o.args[0] for o in outputs] == ["660 Hz", "660 Hz"]


def harmonic_ratio(frames, frequency):
    """Energy at 3x the fundamental relative to the fundamental (a square wave: ~1/3)."""
    rate, x = audio_samples(frames)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / rate)

    def peak(f):
        return spectrum[(freqs > f - 20) & (freqs < f + 20)].max()

    return peak(3 * frequency) / peak(frequency)


async def test_number_and_dropdown_inputs_restart_a_float32_generator(rtc_url):
    async with StreamClient(rtc_url, "tone_generator") as client:
        await collect(client.audio_frames, 10)
        frames = await collect(client.audio_frames, 50)
        frequency, level = dominant_frequency(frames)
        assert abs(frequency - 440) < 15 and level > 0.05, (frequency, level)
        assert harmonic_ratio(frames, 440) < 0.05  # a sine
        with pytest.raises(SignalingFailed) as bad:
            await client.set_input(wave="triangle")
        assert bad.value.status == 400 and "wave" in bad.value.body["errors"]
        await client.set_input(frequency=300, wave="square")

        async def until_300():
            while True:
                frames = await collect(client.audio_frames, 10)
                if abs(dominant_frequency(frames)[0] - 300) < 30:
                    return

        await asyncio.wait_for(until_300(), 10)
        frames = await collect(client.audio_frames, 50)
    assert abs(dominant_frequency(frames)[0] - 300) < 15
    assert harmonic_ratio(frames, 300) > 0.2  # a square wave's third harmonic
