"""Turn-taking options and the protocol a voice activity detector implements.

The names, fields and defaults are FastRTC's, so FastRTC code that tunes them
keeps working. What the fields *do* differs where FastRTC's meaning came from
judging each fixed 0.6 s chunk on its own (see README "Voice agents"):

* **The silence rule.** A turn ends when the last ``audio_chunk_duration``
  seconds of audio hold less than ``speech_threshold`` seconds of speech. That
  is FastRTC's rule ("a chunk with less than 0.1 s of speech is a pause") on a
  window that slides by one VAD window (32 ms) instead of jumping by whole
  chunks, so after clean speech the turn ends ``audio_chunk_duration -
  speech_threshold`` = **0.5 s** after the speech, whatever size the input
  frames have. To wait longer, raise ``audio_chunk_duration`` (0.9 waits 0.8 s).
* ``SileroVadOptions.min_silence_duration_ms`` (2000) is accepted and ignored:
  in FastRTC it applied inside one 0.6 s chunk, where 2 s of silence can never
  occur, so it never acted either; letting it act here would make every turn
  wait 2 s.
* ``window_size_samples`` (1024) is accepted and ignored: Silero v5/v6 read
  512-sample windows at 16 kHz and nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, runtime_checkable

import numpy as np
from django.core.exceptions import ImproperlyConfigured

__all__ = [
    "AlgoOptions",
    "ModelOptions",
    "PauseDetectionModel",
    "SileroVadOptions",
    "StreamingPauseDetectionModel",
    "VadUnavailable",
]

ModelOptions: TypeAlias = Any
"""Options a :class:`PauseDetectionModel` takes (FastRTC's alias)."""


class VadUnavailable(ImproperlyConfigured, RuntimeError):
    """No voice activity detector can be loaded (the ``vad`` extra is missing or broken).

    An ``ImproperlyConfigured`` (the project cannot start that stream) and, as
    FastRTC raises, a ``RuntimeError``.
    """


@dataclass
class AlgoOptions:
    """When a person has started and stopped talking (FastRTC's fields and defaults).

    Attributes:
        audio_chunk_duration: length in seconds of the sliding window the
            silence rule looks at (see the module docstring).
        started_talking_threshold: seconds of speech, within that window,
            after which the person counts as talking (``started_talking`` is
            sent and, with ``can_interrupt``, a reply is cut).
        speech_threshold: a turn ends when the window holds less speech than this.
        max_continuous_speech_s: a turn longer than this ends without a pause.
    """

    audio_chunk_duration: float = 0.6
    started_talking_threshold: float = 0.2
    speech_threshold: float = 0.1
    max_continuous_speech_s: float = math.inf

    def __post_init__(self) -> None:
        if not self.audio_chunk_duration > 0:
            raise ValueError("audio_chunk_duration must be positive")
        if not 0 <= self.speech_threshold < self.audio_chunk_duration:
            raise ValueError("speech_threshold must be >= 0 and below audio_chunk_duration")
        if self.started_talking_threshold < 0:
            raise ValueError("started_talking_threshold must be >= 0")
        if not self.max_continuous_speech_s > 0:
            raise ValueError("max_continuous_speech_s must be positive")

    @property
    def silence_s(self) -> float:
        """Seconds of silence after clean speech that end a turn (0.5 with the defaults)."""
        return self.audio_chunk_duration - self.speech_threshold


@dataclass
class SileroVadOptions:
    """Silero's options (FastRTC's fields and defaults).

    Attributes:
        threshold: a VAD window whose speech probability reaches this is speech
            (it stays speech down to ``threshold - 0.15``, Silero's hysteresis).
        min_speech_duration_ms: speech shorter than this never starts a turn
            (with ``started_talking_threshold``, the larger counts).
        max_speech_duration_s: a turn ends after this much audio (as
            ``max_continuous_speech_s``).
        min_silence_duration_ms: accepted for FastRTC code, ignored (module docstring).
        window_size_samples: accepted for FastRTC code, ignored (Silero v5/v6 use 512).
        speech_pad_ms: the pre-roll: the utterance handed to ``fn`` starts this
            long before the detected start of speech, and ends this long after
            its end (both within the audio there is).
    """

    threshold: float = 0.5
    min_speech_duration_ms: int = 250
    max_speech_duration_s: float = math.inf
    min_silence_duration_ms: int = 2000
    window_size_samples: int = 1024
    speech_pad_ms: int = 400

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1:
            raise ValueError("threshold must be between 0 and 1")
        if self.min_speech_duration_ms < 0 or self.speech_pad_ms < 0:
            raise ValueError("min_speech_duration_ms and speech_pad_ms must be >= 0")
        if not self.max_speech_duration_s > 0:
            raise ValueError("max_speech_duration_s must be positive")


@runtime_checkable
class PauseDetectionModel(Protocol):
    """FastRTC's protocol for a voice activity detector passed as ``ReplyOnPause(model=...)``.

    ``vad((sample_rate, audio), options)`` judges one chunk on its own and
    returns ``(seconds of speech, speech chunks)``, each chunk a dict with
    ``"start"`` and ``"end"`` sample indices into the audio at 16 kHz.
    ``warmup()`` runs once before the first session.

    A model that only has these two methods is run as FastRTC runs it: on
    whole ``audio_chunk_duration`` chunks (its spans of speech feed the same
    turn logic, a chunk later). A model that also implements
    :class:`StreamingPauseDetectionModel` is run window by window with a
    state per session, which is what ends turns 0.5 s after speech.
    """

    def vad(
        self, audio: tuple[int, np.ndarray], options: ModelOptions
    ) -> tuple[float, list[dict[str, int]]]: ...

    def warmup(self) -> None: ...


@runtime_checkable
class StreamingPauseDetectionModel(PauseDetectionModel, Protocol):
    """A :class:`PauseDetectionModel` that can also run on a stream, window by window.

    One model object serves every session of the process (``ReplyOnPause.copy()``
    shares it); each session holds its own small state from ``new_state()``.

    Attributes:
        sample_rate: the rate windows are given at (16000 for Silero).
        window_samples: samples per window (512 for Silero v5/v6: 32 ms).
    """

    sample_rate: int
    window_samples: int

    def new_state(self) -> Any:
        """A fresh per-session state (Silero: the recurrent state and 64 samples of context)."""
        ...

    def window_probability(self, state: Any, window: np.ndarray) -> float:
        """Speech probability of one float32 window in [-1, 1]; updates ``state``."""
        ...
