"""Media sources for the client and for tests: a test pattern, a tone, an array played
in real time. Each paces itself on the monotonic clock and numbers its frames (pts), so
that what comes back can be matched to what was sent."""

from __future__ import annotations

import asyncio
import fractions
import math
import time

import numpy as np
from aiortc.mediastreams import MediaStreamTrack
from av import AudioFrame, VideoFrame


class SyntheticVideoTrack(MediaStreamTrack):
    """Test pattern: the top ``marker_rows`` rows white, the rest dark; a frame counter in pts."""

    kind = "video"

    def __init__(
        self, width: int = 320, height: int = 240, fps: int = 30, marker_rows: int | None = None
    ) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        image = np.full((height, width, 3), 16, np.uint8)
        image[: marker_rows if marker_rows is not None else height // 4] = 235
        self.image = image
        self.sent = 0
        self._start: float | None = None

    async def recv(self) -> VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        target = self._start + self.sent / self.fps
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = VideoFrame.from_ndarray(self.image, format="bgr24")
        frame.pts = int(self.sent * 90000 / self.fps)
        frame.time_base = fractions.Fraction(1, 90000)
        self.sent += 1
        return frame


class ToneAudioTrack(MediaStreamTrack):
    """A sine tone at ``frequency`` Hz, 48 kHz mono, 20 ms frames in real time."""

    kind = "audio"

    def __init__(
        self, frequency: float = 440.0, sample_rate: int = 48000, amplitude: float = 0.5
    ) -> None:
        super().__init__()
        self.frequency, self.sample_rate, self.amplitude = frequency, sample_rate, amplitude
        self.samples = sample_rate // 50
        self.sent = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self.sent * 0.02 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (np.arange(self.samples) + self.sent * self.samples) / self.sample_rate
        wave = (np.sin(2 * math.pi * self.frequency * t) * self.amplitude * 32767).astype(np.int16)
        frame = AudioFrame.from_ndarray(wave.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self.sent * self.samples
        frame.time_base = fractions.Fraction(1, self.sample_rate)
        self.sent += 1
        return frame


class ArrayAudioTrack(MediaStreamTrack):
    """Plays ``samples`` (int16 mono) at real time in 20 ms frames, then silence.

    ``sent`` counts frames sent, so ``sent * 0.02`` is the position in the
    played audio: tests time what comes back against it (audio time, which a
    busy machine does not stretch the way it stretches the wall clock).
    """

    kind = "audio"

    def __init__(self, samples: np.ndarray, sample_rate: int = 48000) -> None:
        super().__init__()
        self.samples = np.asarray(samples, dtype=np.int16).reshape(-1)
        self.sample_rate = sample_rate
        self.frame = sample_rate // 50
        self.sent = 0
        self._start: float | None = None

    @property
    def position(self) -> float:
        """Seconds of audio sent so far."""
        return self.sent * self.frame / self.sample_rate

    async def recv(self) -> AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self.sent * 0.02 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        chunk = self.samples[self.sent * self.frame : (self.sent + 1) * self.frame]
        if len(chunk) < self.frame:
            chunk = np.concatenate([chunk, np.zeros(self.frame - len(chunk), np.int16)])
        frame = AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self.sent * self.frame
        frame.time_base = fractions.Fraction(1, self.sample_rate)
        self.sent += 1
        return frame
