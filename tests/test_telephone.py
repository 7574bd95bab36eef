"""Telephone calls: a Twilio-shaped conversation against the live consumer."""

from __future__ import annotations

import asyncio
import io
import os
import wave

import numpy as np
import pytest
import websockets
from django.core.management import call_command
from django.test import override_settings

from django_rtcstream.client import SignalingFailed, StreamClient, ToneAudioTrack
from django_rtcstream.models import StreamSession
from django_rtcstream.registry import get_stream
from django_rtcstream.telephone import caller
from django_rtcstream.telephone.twilio import signature
from tests import streams
from tests.settings import RTCSTREAM

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.media]

TOKEN = "twilio-test-token"
SENTENCE = os.path.join(os.path.dirname(__file__), "data", "sentence-8k.wav")


def sentence() -> np.ndarray:
    """ "The quick brown fox jumps over the lazy dog", spoken by espeak-ng, 8 kHz."""
    with wave.open(SENTENCE) as f:
        return np.frombuffer(f.readframes(f.getnframes()), "<i2").astype(np.int16)


def best_correlation(sent: np.ndarray, received: np.ndarray) -> tuple[float, int]:
    """Peak normalised cross-correlation of two signals' envelopes-free waveforms, and its lag."""
    a = sent.astype(np.float64) - sent.mean()
    b = received.astype(np.float64) - received.mean()
    n = len(a) + len(b)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)[: len(b)]
    lag = int(np.argmax(corr))
    window = b[lag : lag + len(a)]
    denom = np.sqrt(np.sum(a[: len(window)] ** 2) * np.sum(window**2)) or 1.0
    return float(corr[lag] / denom), lag


async def closed_record(webrtc_id, timeout=5.0):
    for _ in range(int(timeout / 0.05)):
        record = await StreamSession.objects.filter(webrtc_id=webrtc_id).afirst()
        if record is not None and not record.is_live:
            return record
        await asyncio.sleep(0.05)
    raise AssertionError(f"{webrtc_id} did not close")


def incoming(rtc_url, stream="echo"):
    return f"{rtc_url}{stream}/telephone/incoming"


async def test_twiml_connects_the_call_to_the_media_stream(rtc_url, asgi_server):
    status, twiml = await asyncio.to_thread(
        caller.webhook, incoming(rtc_url), {"CallSid": "CA1", "From": "+15550100"}, None
    )
    assert status == 200
    url, params = caller.stream_from_twiml(twiml)
    assert url == f"ws://{asgi_server.split('://')[1]}/rtc/echo/telephone/handler"
    assert params == {"caller": "+15550100"}


async def test_behind_a_proxy_the_public_url_is_signed_and_used(rtc_url):
    with override_settings(
        RTCSTREAM={
            **RTCSTREAM,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "TELEPHONE_PUBLIC_URL": "https://phone.example.com",
        }
    ):
        public = "https://phone.example.com/rtc/echo/telephone/incoming"
        params = {"CallSid": "CA2"}
        request = __import__("urllib.request").request.Request(
            incoming(rtc_url),
            data=b"CallSid=CA2",
            method="POST",
            headers={
                "X-Twilio-Signature": signature(public, params, TOKEN),
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        with await asyncio.to_thread(__import__("urllib.request").request.urlopen, request) as r:
            twiml = r.read().decode()
    assert (
        caller.stream_from_twiml(twiml)[0] == "wss://phone.example.com/rtc/echo/telephone/handler"
    )


@pytest.mark.parametrize("how", ["unsigned", "wrong", "right"])
async def test_webhook_signature_is_checked_when_a_token_is_set(rtc_url, how):
    with override_settings(RTCSTREAM={**RTCSTREAM, "TWILIO_AUTH_TOKEN": TOKEN}):
        token = {"unsigned": None, "wrong": "not-the-token", "right": TOKEN}[how]
        status, body = await asyncio.to_thread(
            caller.webhook, incoming(rtc_url), {"CallSid": "CA3"}, token
        )
    assert status == (200 if how == "right" else 403), body
    if how != "right":
        assert "invalid_signature" in body


async def test_a_spoken_sentence_comes_back_from_the_echo_stream(rtc_url):
    with override_settings(RTCSTREAM={**RTCSTREAM, "TWILIO_AUTH_TOKEN": TOKEN}):
        said = sentence()
        result = await caller.place_call(
            incoming(rtc_url), said, auth_token=TOKEN, listen=1.0, until_marks=1
        )
    correlation, _lag = best_correlation(said, result.received)
    # mu-law, 8 -> 48 -> 8 kHz and back: the answer is recognisably the same speech.
    assert correlation > 0.6, correlation
    assert result.first_audio_after is not None and result.first_audio_after < 0.5
    # Paced at real time: the answer takes as long to arrive as the speech takes to say.
    assert len(result.received) >= 0.9 * len(said)
    assert result.marks and result.marks[0] == "reply-1"
    record = await closed_record(result.stream_sid)
    assert (record.channel, record.call_sid, record.state) == ("phone", result.call_sid, "closed")
    assert record.close_reason == "client_stopped"
    assert [e for i, e in streams.EVENTS if i == result.stream_sid][-1] == "shutdown"
    assert (record.inputs, record.frames_in > 100) == ([1.0], True)


async def test_the_handler_interrupting_itself_sends_clear(rtc_url):
    result = await caller.place_call(
        incoming(rtc_url), caller.tone(440, 2.0), listen=0.5, dtmf=[(1.0, "#")]
    )
    assert result.clears == 1
    clear = next(e for e in result.events if e.get("event") == "clear")
    assert clear == {"event": "clear", "streamSid": result.stream_sid}
    assert "dtmf:#" in [e for i, e in streams.EVENTS if i == result.stream_sid]


async def test_an_unsigned_media_stream_is_refused_when_a_token_is_set(asgi_server):
    port = asgi_server.rsplit(":", 1)[1]
    url = f"ws://127.0.0.1:{port}/rtc/echo/telephone/handler"
    with override_settings(RTCSTREAM={**RTCSTREAM, "TWILIO_AUTH_TOKEN": TOKEN}):
        for headers in ({}, {"X-Twilio-Signature": signature(url, {}, "wrong-token")}):
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets.connect(url, additional_headers=headers):
                    pass
            assert refused.value.response.status_code == 403


async def test_custom_parameters_set_inputs_and_outputs_are_published(rtc_url):
    silent = await caller.place_call(
        incoming(rtc_url), caller.tone(440, 1.0), listen=0.3, custom_parameters={"gain": "0"}
    )
    assert np.abs(silent.received).max(initial=0) < 200
    stream = get_stream("audio-send")
    call = asyncio.ensure_future(
        caller.place_call(incoming(rtc_url, "audio-send"), caller.tone(300, 2.0), listen=0.2)
    )
    for _ in range(100):
        sessions = [
            s async for s in StreamSession.objects.filter(stream="audio-send", state="connected")
        ]
        if sessions:
            break
        await asyncio.sleep(0.05)
    output = await stream.fetch_latest_output(sessions[0].webrtc_id, timeout=5)
    await call
    assert output.args[0] % 25 == 0


async def test_phone_calls_count_toward_the_limit(rtc_url):
    call = asyncio.ensure_future(
        caller.place_call(incoming(rtc_url, "limited"), caller.tone(440, 1.5), listen=0.2)
    )
    await asyncio.sleep(0.5)
    with pytest.raises(SignalingFailed) as full:
        await StreamClient(rtc_url, "limited", audio=ToneAudioTrack()).connect()
    await call
    assert full.value.code == "concurrency_limit_reached"


async def test_stop_or_hangup_before_start_is_harmless(asgi_server):
    port = asgi_server.rsplit(":", 1)[1]
    url = f"ws://127.0.0.1:{port}/rtc/echo/telephone/handler"
    async with websockets.connect(url) as ws:
        await ws.send('{"event": "connected", "protocol": "Call"}')
        await ws.send('{"event": "stop"}')
    async with websockets.connect(url):
        pass
    await asyncio.sleep(0.2)
    assert not await StreamSession.objects.aexists()


async def test_rtcstream_call_command_records_the_answer(rtc_url, tmp_path):
    out = tmp_path / "answer.wav"
    stdout = io.StringIO()
    await asyncio.to_thread(
        call_command,
        "rtcstream_call",
        "echo",
        "--url",
        rtc_url,
        "--input",
        SENTENCE,
        "--listen",
        "0.5",
        "--output",
        str(out),
        stdout=stdout,
    )
    report = stdout.getvalue()
    assert "first audio back after" in report and "marks ['reply-1'" in report
    with wave.open(str(out)) as f:
        assert f.getframerate() == 8000 and f.getnframes() > 0.9 * len(sentence())


async def test_a_reply_with_gaps_inside_gets_one_mark(rtc_url):
    # chunky_reply answers with 2 s of audio made slower than real time: ten chunks with
    # the output running dry between them. That is one reply, so one mark.
    result = await caller.place_call(
        incoming(rtc_url, "chunky_reply"), caller.tone(300, 0.2), listen=0.1, until_marks=1
    )
    assert len(result.received) >= 0.9 * 2 * 8000
    assert result.marks == ["reply-1"]
