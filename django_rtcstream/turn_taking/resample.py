"""Input audio -> what the VAD reads: mono float32 at 16 kHz, one resampler per session."""

from __future__ import annotations

import av
import numpy as np
from av import AudioFrame

VAD_RATE = 16000


def to_mono(samples: np.ndarray, channels: int) -> np.ndarray:
    """1-D int16 mono from a handler's input row (interleaved when ``channels`` is 2)."""
    row = np.asarray(samples).reshape(-1)
    if channels == 1:
        return row
    mixed: np.ndarray = (
        row[: len(row) - len(row) % channels].reshape(-1, channels).mean(axis=1).astype(np.int16)
    )
    return mixed


class VadResampler:
    """Streams int16 mono at ``rate`` into float32 at ``target`` (state kept across calls)."""

    def __init__(self, rate: int, target: int = VAD_RATE) -> None:
        self.rate = rate
        self._resampler = (
            None if rate == target else av.AudioResampler(format="flt", layout="mono", rate=target)
        )

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        if self._resampler is None:
            return samples.astype(np.float32) / 32768.0
        frame = AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.int16).reshape(1, -1),
            format="s16",
            layout="mono",
        )
        frame.sample_rate = self.rate
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)


def to_vad_rate(rate: int, array: np.ndarray) -> np.ndarray:
    """A whole chunk (int16 or float, any 1-D/(1, n) shape) as float32 at 16 kHz."""
    a = np.asarray(array).reshape(-1)
    if a.dtype.kind == "f":
        a = (np.clip(a, -1, 1) * 32767).astype(np.int16)
    resampler = VadResampler(rate)
    out = resampler(a.astype(np.int16))
    if resampler._resampler is not None:
        tail = [f.to_ndarray().reshape(-1) for f in resampler._resampler.resample(None)]
        if tail:
            out = np.concatenate([out, *tail])
    return out
