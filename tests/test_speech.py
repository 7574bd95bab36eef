"""The offline speech helpers: espeak-ng speaks, PocketSphinx hears, nothing touches the network."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from django_rtcstream import EspeakTTSOptions, SpeechModelUnavailable, get_stt_model, get_tts_model
from django_rtcstream.speech.audio import resample_int16

pytest.importorskip("pocketsphinx")
if shutil.which("espeak-ng") is None:  # .ci/run installs it
    if os.environ.get("CI"):
        pytest.fail("espeak-ng is not installed (apt-get install espeak-ng)")
    pytest.skip("espeak-ng is not installed", allow_module_level=True)

# The Klatt variant is the espeak-ng voice PocketSphinx's en-US model hears best.
KLATT = EspeakTTSOptions(voice="klatt")
DIGITS = "one two three four five"


def test_pocketsphinx_hears_the_digits_espeak_ng_says() -> None:
    rate, audio = get_tts_model().tts(DIGITS, KLATT)
    heard = get_stt_model().stt((rate, audio))
    assert "two three four five" in heard, heard


def test_a_phrase_list_recognises_the_command_said_and_not_another() -> None:
    stt = get_stt_model(phrases=["turn on the light", DIGITS, "seven eight nine", "stop"])
    rate, audio = get_tts_model().tts("seven eight nine", KLATT)
    assert stt.stt((rate, audio)) == "seven eight nine"
    rate, audio = get_tts_model().tts(DIGITS, KLATT)
    assert stt.stt((rate, audio)) == DIGITS


def test_48_khz_handler_audio_of_shape_1_by_n_is_resampled_before_recognition() -> None:
    rate, audio = get_tts_model().tts(DIGITS, KLATT)
    int16 = (audio * 32767).astype(np.int16)
    at_48k = resample_int16(int16, rate, 48000).reshape(1, -1)
    assert "two three four five" in get_stt_model().stt((48000, at_48k))


def test_silence_is_heard_as_an_empty_string() -> None:
    assert get_stt_model(phrases=["stop"]).stt((16000, np.zeros(16000, np.int16))) == ""
    assert get_stt_model().stt((16000, np.zeros(0, np.int16))) == ""


def test_stream_tts_yields_one_chunk_per_sentence_that_join_to_the_tts_audio() -> None:
    tts = get_tts_model()
    text = "Hello there. How are you today? I am fine!"
    rate, whole = tts.tts(text)
    assert rate == 22050 and whole.dtype == np.float32 and len(whole) > rate

    async def collect() -> list[tuple[int, np.ndarray]]:
        return [chunk async for chunk in tts.stream_tts(text)]

    chunks = asyncio.run(collect())
    sync_chunks = list(tts.stream_tts_sync(text))
    assert len(chunks) == len(sync_chunks) == 3
    assert np.array_equal(np.concatenate([c for _, c in chunks]), whole)
    assert np.array_equal(np.concatenate([c for _, c in sync_chunks]), whole)


def test_text_starting_with_a_dash_is_spoken_not_read_as_an_option() -> None:
    rate, audio = get_tts_model().tts("--help me")
    assert len(audio) > rate // 4


def test_unknown_models_name_what_to_install() -> None:
    with pytest.raises(SpeechModelUnavailable, match=r"pocketsphinx.*django-rtcstream\[stt\]"):
        get_stt_model("moonshine/base")
    with pytest.raises(SpeechModelUnavailable, match=r"apt-get install espeak-ng"):
        get_tts_model("kokoro")
    with pytest.raises(SpeechModelUnavailable, match=r"apt-get install espeak-ng"):
        get_tts_model(model_path="/nonexistent/espeak-ng")


def test_bad_options_and_unknown_words_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="voice variant"):
        get_tts_model().tts("hi", EspeakTTSOptions(voice="x y"))
    with pytest.raises(ValueError, match="speed"):
        get_tts_model().tts("hi", EspeakTTSOptions(speed=9))
    with pytest.raises(ValueError, match="zzqxv"):
        get_stt_model(phrases=["zzqxv"])


OFFLINE_SCRIPT = textwrap.dedent(
    """
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
    from django_rtcstream import EspeakTTSOptions, get_stt_model, get_tts_model
    rate, audio = get_tts_model().tts("one two three four five", EspeakTTSOptions(voice="klatt"))
    print(get_stt_model().stt((rate, audio)))
    print("ATTEMPTS", attempts)
    """
)


def test_speech_models_load_and_work_with_the_network_unavailable() -> None:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HTTP_PROXY="http://10.255.255.1:9",
        HTTPS_PROXY="http://10.255.255.1:9",
        ALL_PROXY="http://10.255.255.1:9",
        http_proxy="http://10.255.255.1:9",
        https_proxy="http://10.255.255.1:9",
    )
    done = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert done.returncode == 0, done.stderr
    assert "two three four five" in done.stdout
    assert "ATTEMPTS []" in done.stdout
