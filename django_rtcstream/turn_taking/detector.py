"""The turn detector: one session's input audio in, "started talking" and "turn ended" out.

It is pure (no threads, no I/O): ``ReplyOnPause.receive`` feeds it frames, the
unit tests feed it arrays. The VAD keeps its state across frames, so a turn is
judged on the audio as it flows, not on fixed chunks:

* a VAD window (32 ms) is speech when Silero's probability reaches
  ``threshold`` (and stays speech down to ``threshold - 0.15``);
* the person has **started talking** once the last ``audio_chunk_duration``
  seconds hold ``max(started_talking_threshold, min_speech_duration_ms)`` of
  speech; the turn's audio starts ``speech_pad_ms`` before the first speech
  window of that run (the pre-roll: nothing of the first word is lost);
* the **turn ends** when the last ``audio_chunk_duration`` seconds hold less
  than ``speech_threshold`` seconds of speech (0.5 s of silence after clean
  speech with the defaults; a 0.3 s breath keeps more than 0.1 s of speech in
  the window, so it never ends a turn), or once it lasts
  ``max_continuous_speech_s`` / ``max_speech_duration_s``.

Times are seconds of input audio since the session started (the audio
timeline, not the wall clock).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from django_rtcstream.turn_taking.options import (
    AlgoOptions,
    SileroVadOptions,
    StreamingPauseDetectionModel,
)
from django_rtcstream.turn_taking.resample import VadResampler, to_mono

HYSTERESIS = 0.15  # Silero's: speech continues down to threshold - 0.15
# A window whose loudest sample is under -60 dBFS is not speech: it is judged silent
# without running the model (a muted microphone, a quiet line, the silence between
# replies), so an idle session costs what an echo session does. Speech that quiet is
# inaudible; Silero gives it a probability near 0 anyway.
SILENT_PEAK = 10 ** (-60 / 20)


@dataclass(frozen=True)
class SpeechStarted:
    """The person started talking at ``onset_s``; it was sure at ``detected_s``."""

    onset_s: float
    detected_s: float


@dataclass(frozen=True)
class TurnEnded:
    """A whole utterance: ``audio`` (1, n) int16 as received, from ``start_s`` on."""

    audio: np.ndarray
    start_s: float
    onset_s: float
    speech_end_s: float
    detected_s: float
    reason: str  # "pause" or "max_speech"


Event = SpeechStarted | TurnEnded


class TurnDetector:
    """Turn-taking state of one session (see the module docstring)."""

    def __init__(
        self,
        model: Any,
        algo_options: AlgoOptions,
        model_options: SileroVadOptions,
        input_rate: int,
        channels: int = 1,
    ) -> None:
        self.model = model
        self.algo = algo_options
        self.options = model_options
        self.input_rate = input_rate
        self.channels = channels
        self.streaming = isinstance(model, StreamingPauseDetectionModel)
        rate = int(getattr(model, "sample_rate", 16000)) if self.streaming else 16000
        self.vad_rate = rate
        self.window = int(getattr(model, "window_samples", 512)) if self.streaming else 512
        self.window_s = self.window / rate
        self._state = model.new_state() if self.streaming else None
        # Frames under half the gate are not resampled (resampling can overshoot a
        # little; half keeps every window that could reach the gate resampled).
        self._resampler = VadResampler(input_rate, rate, quiet_peak=int(SILENT_PEAK * 32768 / 2))
        self._pending = np.zeros(0, np.float32)  # VAD-rate samples not yet in a window
        self._pending_silent = True  # _pending holds zeros only (a quiet line's fast path)
        self._zeros = np.zeros(self.window, np.float32)  # what _pending is then (never written)
        self._chunk: list[np.ndarray] = []  # chunk models: audio of the current chunk
        self._windows = 0  # windows judged so far
        self._span = max(1, round(algo_options.audio_chunk_duration / self.window_s))
        self._start_windows = min(
            self._span,
            max(
                1,
                math.ceil(
                    max(
                        algo_options.started_talking_threshold,
                        model_options.min_speech_duration_ms / 1000,
                    )
                    / self.window_s
                    - 1e-9
                ),
            ),
        )
        self._pause_limit = algo_options.speech_threshold / self.window_s  # windows of speech
        self._max_turn_s = min(
            algo_options.max_continuous_speech_s, model_options.max_speech_duration_s
        )
        self._pad_s = model_options.speech_pad_ms / 1000
        self._flags: deque[bool] = deque()
        self._speech = 0  # speech windows in _flags
        self._was_speech = False
        self._candidate: int | None = None  # first speech window of the current run
        self._last_speech = 0
        self.started = False
        self._turn_start_s = 0.0
        self._onset_s = 0.0
        self._floor_s = 0.0  # audio before this went to the previous turn
        # Input audio kept for the turn (and its pre-roll): (first sample, 1-D samples).
        self._ring: deque[tuple[int, np.ndarray]] = deque()
        self._received = 0  # input samples (per channel)
        self._keep_idle_s = self._pad_s + 2 * algo_options.audio_chunk_duration + 0.5
        self.listening = True

    # -- input -------------------------------------------------------------------------

    @property
    def now_s(self) -> float:
        """Seconds of input audio received."""
        return self._received / self.input_rate

    def feed(self, samples: np.ndarray) -> list[Event]:
        """Take one input frame (``(1, n)`` int16, interleaved if stereo); return what happened."""
        row = np.asarray(samples).reshape(-1)
        if not len(row):
            return []
        if self.listening:
            self._ring.append((self._received, row))
        self._received += len(row) // self.channels
        events: list[Event] = []
        vad_in = self._resampler(to_mono(row, self.channels))
        if self.streaming and self._resampler.quiet and self._pending_silent:
            # Zeros after zeros: every window they complete is silent, judged as the
            # gate would judge it, without building the windows.
            have = len(self._pending) + len(vad_in)
            for _ in range(have // self.window):
                self._judge(self._speech_flag(0.0), events)
            self._pending = self._zeros[: have % self.window]
        elif self.streaming:
            self._pending = (
                np.concatenate((self._pending, vad_in)) if len(self._pending) else vad_in
            )
            n = len(self._pending) // self.window
            for i in range(n):
                window = self._pending[i * self.window : (i + 1) * self.window]
                if float(np.max(np.abs(window))) < SILENT_PEAK:
                    p = 0.0
                else:
                    p = self.model.window_probability(self._state, window)
                self._judge(self._speech_flag(p), events)
            self._pending = self._pending[n * self.window :].copy()
            # What is left is zeros only if this frame was quiet and its zeros cover it.
            self._pending_silent = self._resampler.quiet and len(self._pending) <= len(vad_in)
        else:
            self._feed_chunk_model(vad_in, events)
        self._trim()
        return events

    def _speech_flag(self, p: float) -> bool:
        """Is a window of probability ``p`` speech? Silero's rule, with its hysteresis."""
        threshold = self.options.threshold
        flag = p >= threshold or (self._was_speech and p >= threshold - HYSTERESIS)
        self._was_speech = flag
        return flag

    def _feed_chunk_model(self, vad_in: np.ndarray, events: list[Event]) -> None:
        """A FastRTC-style model: judge each whole chunk, then replay its windows."""
        self._chunk.append(vad_in)
        have = sum(len(c) for c in self._chunk)
        size = self._span * self.window
        if have < size:
            return
        audio = np.concatenate(self._chunk)
        chunk, rest = audio[:size], audio[size:]
        self._chunk = [rest] if len(rest) else []
        _, spans = self.model.vad((self.vad_rate, chunk), self.options)
        flags = np.zeros(self._span, bool)
        for span in spans or []:
            first = int(span.get("start", 0)) // self.window
            last = math.ceil(int(span.get("end", 0)) / self.window)
            flags[max(first, 0) : max(last, 0)] = True
        for flag in flags:
            self._judge(bool(flag), events)

    # -- the rule ----------------------------------------------------------------------

    def _judge(self, flag: bool, events: list[Event]) -> None:
        j = self._windows
        self._windows += 1
        end_s = self._windows * self.window_s
        if not self.listening:
            return
        self._flags.append(flag)
        self._speech += flag
        if len(self._flags) > self._span:
            self._speech -= self._flags.popleft()
        if flag:
            self._last_speech = j
            if self._candidate is None:
                self._candidate = j
        elif not self.started and self._speech == 0:
            self._candidate = None
        if not self.started:
            if self._candidate is not None and self._speech >= self._start_windows:
                self.started = True
                self._onset_s = self._candidate * self.window_s
                self._turn_start_s = max(
                    self._onset_s - self._pad_s, self._floor_s, self._ring_start_s()
                )
                events.append(SpeechStarted(self._onset_s, end_s))
            return
        if self._speech < self._pause_limit - 1e-9:
            events.append(self._end(end_s, "pause"))
        elif end_s - self._turn_start_s >= self._max_turn_s:
            events.append(self._end(end_s, "max_speech"))

    def _end(self, now_s: float, reason: str) -> TurnEnded:
        speech_end_s = (self._last_speech + 1) * self.window_s
        cut_s = min(now_s, speech_end_s + self._pad_s, self.now_s)
        audio = self._slice(self._turn_start_s, cut_s)
        turn = TurnEnded(audio, self._turn_start_s, self._onset_s, speech_end_s, now_s, reason)
        self._floor_s = cut_s
        self._reset_run()
        return turn

    def _reset_run(self) -> None:
        self.started = False
        self._candidate = None
        self._flags.clear()
        self._speech = 0

    def set_listening(self, listening: bool) -> None:
        """While not listening (a reply that may not be interrupted), speech starts no turn.

        The VAD still runs, so its state is current when listening resumes;
        the audio heard meanwhile is dropped, pre-roll included.
        """
        if listening == self.listening:
            return
        self.listening = listening
        if not listening:
            self._reset_run()
            self._ring.clear()
        self._floor_s = self.now_s

    def turn_so_far(self) -> tuple[np.ndarray, float, float] | None:
        """The turn in progress: (its audio so far, its start, its speech onset), or None.

        ``ReplyOnStopWords`` listens to the start of a turn for its stop word
        before the turn has ended.
        """
        if not self.started:
            return None
        return self._slice(self._turn_start_s, self.now_s), self._turn_start_s, self._onset_s

    def take_audio(self) -> tuple[np.ndarray, float]:
        """The audio of the turn so far (for ``trigger_response``); ends the run."""
        start = self._turn_start_s if self.started else self._floor_s
        audio = self._slice(start, self.now_s)
        self._floor_s = self.now_s
        self._reset_run()
        return audio, start

    # -- the kept audio ----------------------------------------------------------------

    def _ring_start_s(self) -> float:
        return self._ring[0][0] / self.input_rate if self._ring else self.now_s

    def _trim(self) -> None:
        keep_s = self._turn_start_s if self.started else self.now_s - self._keep_idle_s
        keep = int(keep_s * self.input_rate)
        while len(self._ring) > 1:
            first, row = self._ring[0]
            if first + len(row) // self.channels > keep:
                break
            self._ring.popleft()

    def _slice(self, start_s: float, end_s: float) -> np.ndarray:
        a = round(start_s * self.input_rate)
        b = round(end_s * self.input_rate)
        parts = []
        for first, row in self._ring:
            count = len(row) // self.channels
            lo, hi = max(a, first), min(b, first + count)
            if hi > lo:
                parts.append(row[(lo - first) * self.channels : (hi - first) * self.channels])
        if not parts:
            return np.zeros((1, 0), np.int16)
        return np.concatenate(parts).reshape(1, -1)
