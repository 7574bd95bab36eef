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
    """Streams int16 mono at ``rate`` into float32 at ``target`` (state kept across calls).

    With ``quiet_peak``, a frame whose loudest sample is under it is not resampled:
    it becomes as many zeros as the resampler would have made (the fraction carried
    over). The detector judges such windows silent without the model anyway, and
    PyAV's resampling, about 100 us a frame with its frame building, was most of
    what an idle voice session cost. The resampler's few samples of history are
    left as they were: when sound returns they come out first, a few milliseconds
    of the last sound, never a drift (the count of samples stays exact within them).
    """

    def __init__(self, rate: int, target: int = VAD_RATE, quiet_peak: int = 0) -> None:
        self.rate, self.target, self.quiet_peak = rate, target, quiet_peak
        self._owed = 0.0  # fractional zeros carried between quiet frames
        self.quiet = False  # the last call was a quiet frame: what it returned is zeros
        self._resampler = (
            None if rate == target else av.AudioResampler(format="flt", layout="mono", rate=target)
        )

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        if self._resampler is None:
            return samples.astype(np.float32) / 32768.0
        self.quiet = bool(self.quiet_peak and len(samples) and _peak(samples) < self.quiet_peak)
        if self.quiet:
            self._owed += len(samples) * self.target / self.rate
            n = int(self._owed)
            self._owed -= n
            return np.zeros(n, np.float32)
        frame = AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.int16).reshape(1, -1),
            format="s16",
            layout="mono",
        )
        frame.sample_rate = self.rate
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)


def _peak(samples: np.ndarray) -> int:
    """The largest magnitude of int16 samples (no overflow at -32768)."""
    return max(int(samples.max()), -int(samples.min()))


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
