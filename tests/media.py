"""Helpers for reading media that came back through real codecs."""

from __future__ import annotations

import numpy as np


def rows_brightness(frame) -> tuple[float, float]:
    """Mean brightness of the top and bottom tenth of a video frame."""
    a = frame.to_ndarray(format="bgr24")
    n = max(1, a.shape[0] // 10)
    return float(a[:n].mean()), float(a[-n:].mean())


def mean_brightness(frame) -> float:
    return float(frame.to_ndarray(format="bgr24").mean())


def audio_samples(frames) -> tuple[int, np.ndarray]:
    """Concatenate decoded audio frames into mono float samples."""
    rate = frames[0].sample_rate
    parts = []
    for f in frames:
        a = f.to_ndarray().astype(np.float32)
        channels = len(f.layout.channels)
        a = a.mean(axis=0) if f.format.is_planar else a.reshape(-1, channels).mean(axis=1)
        parts.append(a / 32768.0)
    return rate, np.concatenate(parts)


def dominant_frequency(frames) -> tuple[float, float]:
    """(frequency in Hz, RMS level) of decoded audio frames."""
    rate, x = audio_samples(frames)
    rms = float(np.sqrt(np.mean(x**2)))
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freq = float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spectrum))])
    return freq, rms


async def collect(queue, n, timeout=10.0):
    import asyncio

    out = []

    async def take():
        while len(out) < n:
            out.append(await queue.get())

    await asyncio.wait_for(take(), timeout)
    return out


async def drain(queue):
    while not queue.empty():
        queue.get_nowait()
