"""Speech for the turn-taking tests: Debian's espeak-ng, trimmed and placed on a timeline."""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess
import wave
from dataclasses import dataclass

import av
import numpy as np
import pytest

ESPEAK = shutil.which("espeak-ng")
# Under CI=true a missing espeak-ng fails the tests (speak() raises) instead of skipping them.
needs_espeak = pytest.mark.skipif(
    ESPEAK is None and not os.environ.get("CI"), reason="espeak-ng is not installed (.ci/run)"
)
SPEECH_LEVEL = 300  # int16: louder than this is speech (espeak's silence is exactly 0)


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return samples.astype(np.int16)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=target)
    frame = av.AudioFrame.from_ndarray(
        samples.astype(np.int16).reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = rate
    parts = [f.to_ndarray()[0] for f in resampler.resample(frame)]
    parts += [f.to_ndarray()[0] for f in resampler.resample(None)]
    return np.concatenate(parts)


@functools.cache
def _espeak(text: str) -> tuple[int, bytes]:
    assert ESPEAK is not None
    out = subprocess.run(
        [ESPEAK, "--stdout", "-s", "160", text], check=True, capture_output=True, timeout=30
    ).stdout
    with wave.open(io.BytesIO(out)) as w:
        return w.getframerate(), w.readframes(w.getnframes())


def speak(text: str, rate: int = 48000) -> np.ndarray:
    """``text`` spoken by espeak-ng, at ``rate``, without espeak's leading and trailing silence."""
    source_rate, raw = _espeak(text)
    samples = np.frombuffer(raw, np.int16)
    loud = np.flatnonzero(np.abs(samples) > SPEECH_LEVEL)
    samples = samples[loud[0] : loud[-1] + 1]
    return resample(samples, source_rate, rate)


@dataclass
class Script:
    """Audio to play and where its speech is (seconds from its start)."""

    audio: np.ndarray
    rate: int
    spans: list[tuple[float, float]]  # (start, end) of each spoken part

    def at(self, rate: int) -> np.ndarray:
        return resample(self.audio, self.rate, rate)


def script(*parts: str | float, rate: int = 48000) -> Script:
    """Alternate silences (floats, seconds) and sentences (str) into one recording."""
    pieces: list[np.ndarray] = []
    spans: list[tuple[float, float]] = []
    position = 0
    for part in parts:
        if isinstance(part, str):
            speech = speak(part, rate)
            spans.append((position / rate, (position + len(speech)) / rate))
        else:
            speech = np.zeros(int(part * rate), np.int16)
        pieces.append(speech)
        position += len(speech)
    return Script(np.concatenate(pieces), rate, spans)


def envelope(samples: np.ndarray, rate: int, step: float = 0.01) -> np.ndarray:
    n = int(rate * step)
    x = samples.astype(np.float64).reshape(-1)
    x = x[: len(x) - len(x) % n].reshape(-1, n)
    return np.sqrt((x**2).mean(axis=1))


def locate(piece: np.ndarray, piece_rate: int, whole: Script) -> tuple[float, float]:
    """Where ``piece`` (e.g. the audio handed to fn) sits in ``whole``: (offset s, match 0-1).

    Energy envelopes in 10 ms steps, normalised cross-correlation: robust to the
    codecs on the way (Opus, mu-law) and to resampling.
    """
    a = np.log1p(envelope(piece, piece_rate))
    b = np.log1p(envelope(whole.audio, whole.rate))
    if len(a) > len(b):
        a = a[: len(b)]
    best, best_lag = -1.0, 0
    for lag in range(len(b) - len(a) + 1):
        window = b[lag : lag + len(a)]
        denom = np.linalg.norm(a - a.mean()) * np.linalg.norm(window - window.mean())
        score = float(np.dot(a - a.mean(), window - window.mean()) / denom) if denom else 0.0
        if score > best:
            best, best_lag = score, lag
    return best_lag * 0.01, best
