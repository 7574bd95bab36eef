"""Markers that survive the codecs, so a client can time every frame's round trip.

Video (640x480, VP8): a band of 16 blocks of 40x40 pixels across the middle of
the picture (rows 220-260, symmetric, so a vertical flip leaves it in place and
leaves each block's column alone). Block 0 is white, block 15 black (sync), 13
blocks carry a frame counter and one block its parity. Above the band the
picture is a bright scrolling pattern, below it a dark one, so the receiver
also tells whether the handler flipped the frame (an unflipped echo is not a
handled frame). Frames are made in yuv420p, as a camera would give them.

Audio (48 kHz, Opus): silence with a 20 ms tone burst every ``BURST_EVERY``
frames; burst ``i`` has frequency ``600 + 100 * (i % BURST_IDS)`` Hz. The
receiver finds each burst's onset (sample-exact) and its frequency, and
matches it to the next unmatched burst of that id that was sent.
"""

from __future__ import annotations

import bisect
import fractions
import math

import numpy as np
from av import AudioFrame, VideoFrame

# -- video ------------------------------------------------------------------------------

WIDTH, HEIGHT, FPS = 640, 480, 30
BLOCK = 40
BAND_TOP, BAND_BOTTOM = HEIGHT // 2 - BLOCK // 2, HEIGHT // 2 + BLOCK // 2  # 220..260
NBLOCKS = WIDTH // BLOCK  # 16
DATA_BITS = NBLOCKS - 3  # 13 bits: 8192 frames, 4.5 min at 30 fps
COUNTER_MOD = 1 << DATA_BITS
VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
SCROLL = 4  # pixels per frame
PERIOD = 128


def _pattern(low: int, high: int, rows: int) -> np.ndarray:
    x = np.arange(WIDTH + PERIOD)
    y = np.arange(rows)[:, None]
    wave = (
        0.5
        + 0.25 * np.sin(2 * math.pi * x / PERIOD)
        + 0.25 * np.sin(2 * math.pi * (x + 3 * y) / 37)
    )
    return (low + (high - low) * wave).astype(np.uint8)


class VideoMarker:
    """Builds the numbered frames (yuv420p) and reads the number back."""

    def __init__(self) -> None:
        self.top = _pattern(150, 250, BAND_TOP - 20)  # rows 0..200
        self.bottom = _pattern(5, 100, HEIGHT - BAND_BOTTOM - 20)  # rows 280..480
        self.yuv = np.full((HEIGHT * 3 // 2, WIDTH), 128, np.uint8)  # Y then U, V (gray)
        self.centers = [BLOCK * i + BLOCK // 2 for i in range(NBLOCKS)]

    def frame(self, counter: int) -> VideoFrame:
        y = self.yuv[:HEIGHT]
        shift = (counter * SCROLL) % PERIOD
        y[: BAND_TOP - 20] = self.top[:, shift : shift + WIDTH]
        y[BAND_BOTTOM + 20 : HEIGHT] = self.bottom[:, shift : shift + WIDTH]
        bits = self.bits(counter % COUNTER_MOD)
        band = y[BAND_TOP:BAND_BOTTOM]
        for i, bit in enumerate(bits):
            band[:, BLOCK * i : BLOCK * (i + 1)] = 255 if bit else 0
        return VideoFrame.from_ndarray(self.yuv, format="yuv420p")

    @staticmethod
    def bits(counter: int) -> list[int]:
        data = [(counter >> b) & 1 for b in range(DATA_BITS)]
        return [1, *data, sum(data) & 1, 0]

    def read(self, frame: VideoFrame) -> tuple[int | None, bool]:
        """(counter or None if unreadable, flipped?) from a received frame."""
        if frame.width != WIDTH or frame.height != HEIGHT:
            return None, False
        plane = frame.planes[0]
        y = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:HEIGHT, :WIDTH]
        row = y[HEIGHT // 2 - 8 : HEIGHT // 2 + 8]
        levels = [int(row[:, c - 8 : c + 8].mean()) for c in self.centers]
        if min(abs(level - 128) for level in levels) < 40:
            return None, False
        bits = [1 if level > 128 else 0 for level in levels]
        if bits[0] != 1 or bits[-1] != 0 or (sum(bits[1 : 1 + DATA_BITS]) & 1) != bits[-2]:
            return None, False
        counter = sum(bit << b for b, bit in enumerate(bits[1 : 1 + DATA_BITS]))
        top = float(y[20:180:8, ::8].mean())
        bottom = float(y[300:460:8, ::8].mean())
        return counter, top < bottom


class CounterUnwrap:
    """Maps a 13-bit counter back to the full frame index (near the last one sent)."""

    def __init__(self) -> None:
        self.sent = 0

    def full(self, counter: int) -> int:
        base = self.sent - (self.sent % COUNTER_MOD)
        value = base + counter
        if value > self.sent:
            value -= COUNTER_MOD
        return value


# -- audio ------------------------------------------------------------------------------

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms
BURST_EVERY = 3  # frames: a 20 ms burst, then 40 ms of silence
BURST_IDS = 48  # 600..5300 Hz
AUDIO_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
THRESHOLD = 0.08 * 32768
QUIET_GAP = int(0.025 * SAMPLE_RATE)


def burst_frequency(burst_id: int) -> float:
    return 600.0 + 100.0 * burst_id


class AudioMarker:
    """Builds the 20 ms frames (mono s16): silence, or burst ``n // BURST_EVERY``."""

    def __init__(self) -> None:
        self.silence = np.zeros((1, FRAME_SAMPLES), np.int16)
        t = np.arange(FRAME_SAMPLES) / SAMPLE_RATE
        ramp = np.minimum(
            1.0,
            np.minimum(np.arange(FRAME_SAMPLES), FRAME_SAMPLES - 1 - np.arange(FRAME_SAMPLES)) / 48,
        )
        self.bursts = [
            (np.sin(2 * math.pi * burst_frequency(k) * t) * ramp * 0.5 * 32767)
            .astype(np.int16)
            .reshape(1, -1)
            for k in range(BURST_IDS)
        ]

    def frame(self, n: int) -> tuple[AudioFrame, int | None]:
        """Frame ``n`` and its burst index (None for silence)."""
        burst = n // BURST_EVERY if n % BURST_EVERY == 0 else None
        data = self.silence if burst is None else self.bursts[burst % BURST_IDS]
        frame = AudioFrame.from_ndarray(data, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = n * FRAME_SAMPLES
        frame.time_base = AUDIO_TIME_BASE
        return frame, burst


class AudioDetector:
    """Finds bursts in received audio and matches them to the bursts sent.

    ``feed(frame, t)`` takes each received frame with the time it was handed
    over; a burst's arrival is ``t + offset / rate`` (offset of its onset in
    that frame), its send time the time the frame carrying it was handed to the
    encoder, so both ends count from the start of the burst.
    """

    def __init__(self, sent_times: list[float]) -> None:
        self.sent_times = sent_times  # burst index -> time handed to the encoder
        self.index = 0  # global sample index of the next received sample
        self.last_loud = -10 * SAMPLE_RATE
        self.buffer = np.zeros(0, np.float32)
        self.buffer_start = 0
        self.pending: list[tuple[int, float]] = []  # (onset sample, arrival time)
        self.last_burst = -1
        self.arrivals: list[tuple[int, float]] = []  # (burst index, arrival time)
        self.unknown = 0
        self.window = np.hanning(FRAME_SAMPLES).astype(np.float32)
        self.freqs = np.fft.rfftfreq(FRAME_SAMPLES, 1 / SAMPLE_RATE)

    def feed(self, frame: AudioFrame, t: float) -> None:
        data = frame.to_ndarray()
        channels = len(frame.layout.channels)
        mono = data[0] if frame.format.is_planar else data.reshape(-1)[::channels]
        mono = mono.astype(np.float32)
        if frame.format.name.startswith("flt"):
            mono = mono * 32768
        self.feed_samples(mono, frame.sample_rate, t)

    def feed_samples(self, mono: np.ndarray, rate: int, t: float) -> None:
        """``feed`` for samples already at hand (float32 on the int16 scale), e.g. a WebSocket's."""
        start = self.index
        self.index += mono.size
        loud = np.flatnonzero(np.abs(mono) > THRESHOLD)
        if loud.size:
            positions = loud + start
            previous = np.concatenate(([self.last_loud], positions[:-1]))
            for onset in positions[(positions - previous) > QUIET_GAP * rate // SAMPLE_RATE]:
                self.pending.append((int(onset), t + (onset - start) / rate))
            self.last_loud = int(positions[-1])
        self.buffer = np.concatenate((self.buffer, mono))
        self._identify(rate)
        keep = 4 * FRAME_SAMPLES
        if self.buffer.size > keep:
            drop = self.buffer.size - keep
            self.buffer = self.buffer[drop:]
            self.buffer_start += drop

    def _identify(self, rate: int) -> None:
        n = FRAME_SAMPLES * rate // SAMPLE_RATE
        while self.pending and self.pending[0][0] + n <= self.index:
            onset, arrival = self.pending.pop(0)
            at = onset - self.buffer_start
            if at < 0:
                self.unknown += 1
                continue
            segment = self.buffer[at : at + n]
            if segment.size < n:
                self.unknown += 1
                continue
            window = self.window if n == FRAME_SAMPLES else np.hanning(n).astype(np.float32)
            spectrum = np.abs(np.fft.rfft(segment * window))
            freqs = self.freqs if n == FRAME_SAMPLES else np.fft.rfftfreq(n, 1 / rate)
            peak = float(freqs[int(np.argmax(spectrum))])
            burst_id = round((peak - 600.0) / 100.0)
            if not 0 <= burst_id < BURST_IDS or abs(peak - burst_frequency(burst_id)) > 40:
                self.unknown += 1
                continue
            self._match(burst_id, arrival)

    def _match(self, burst_id: int, arrival: float) -> None:
        # The next burst after the last one matched that has this id (audio stays in order;
        # up to BURST_IDS - 1 lost bursts in a row are told apart).
        candidate = self.last_burst + 1 + ((burst_id - (self.last_burst + 1)) % BURST_IDS)
        if candidate >= len(self.sent_times) or self.sent_times[candidate] > arrival:
            self.unknown += 1
            return
        self.last_burst = candidate
        self.arrivals.append((candidate, arrival))


def first_after(times: list[float], t: float) -> int:
    return bisect.bisect_left(times, t)
