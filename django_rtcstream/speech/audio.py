"""Audio shaping shared by the speech helpers: any handler audio to 16 kHz mono int16.

Speech recognisers want one channel of 16-bit samples at 16 kHz; handlers get
48 kHz WebRTC audio, 8 kHz telephone audio or 24 kHz TTS output, as int16 or
float, 1-D or 2-D. Resampling uses PyAV's resampler (a core dependency), so no
librosa or scipy is needed.
"""

from __future__ import annotations

from typing import Any

import av
import numpy as np
from numpy.typing import NDArray

__all__ = ["mono_int16", "resample_int16"]


def mono_int16(array: NDArray[Any]) -> NDArray[np.int16]:
    """``array`` as 1-D int16 mono samples.

    Accepts ``(n,)``, ``(1, n)``, ``(channels, n)`` and ``(n, channels)`` arrays
    (up to 8 channels, averaged) of int16 or float samples in ``[-1.0, 1.0]``.
    """
    raw = np.asarray(array)
    if raw.dtype.kind == "f":
        a: NDArray[np.int16] = (np.clip(raw, -1.0, 1.0) * 32767.0).astype(np.int16)
    elif raw.dtype == np.int16:
        a = raw
    else:
        raise TypeError(f"audio must be int16 or float samples, got {raw.dtype}")
    if a.ndim == 1:
        return a
    if a.ndim != 2:
        raise ValueError(f"audio must be a 1-D or 2-D array, got shape {a.shape}")
    if a.shape[0] == 1:
        return np.asarray(a[0], dtype=np.int16)
    if a.shape[0] <= 8 and a.shape[1] > 8:
        return np.asarray(a.mean(axis=0), dtype=np.int16)
    if a.shape[1] <= 8:
        return np.asarray(a.mean(axis=1), dtype=np.int16)
    raise ValueError(f"cannot tell the channels of an audio array of shape {a.shape}")


def resample_int16(samples: NDArray[np.int16], rate: int, target: int) -> NDArray[np.int16]:
    """Mono int16 ``samples`` at ``rate`` Hz resampled to ``target`` Hz (whole clip, flushed)."""
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    if rate == target or not len(samples):
        return samples
    resampler = av.AudioResampler(format="s16", layout="mono", rate=target)
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(samples).reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = rate
    parts = [f.to_ndarray()[0] for f in resampler.resample(frame)]
    parts += [f.to_ndarray()[0] for f in resampler.resample(None)]
    if not parts:
        return np.zeros(0, np.int16)
    return np.concatenate(parts).astype(np.int16, copy=False)
