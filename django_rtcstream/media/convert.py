"""Frame conversion between aiortc/PyAV frames and the arrays handlers see.

Audio handlers get ``(sample_rate, int16 array of shape (1, n))`` (stereo is
interleaved, as FastRTC does); they may return int16 or float32 arrays of
shape ``(n,)``, ``(1, n)`` or ``(channels, n)`` at any sample rate. Video
handlers get ``HxWx3 uint8`` arrays. Resampling happens only when rates or
layouts differ, with one resampler per session and direction.
"""

from __future__ import annotations

import asyncio
import fractions
import threading
from collections import deque
from typing import Any

import av
import numpy as np
from av import AudioFrame, VideoFrame
from av.video.reformatter import VideoReformatter

from django_rtcstream.media.arrivals import Arrivals

AUDIO_PTIME = 0.020  # seconds per output audio frame


class AudioInput:
    """Turns decoded WebRTC audio frames into what a handler's ``receive`` expects."""

    def __init__(self, sample_rate: int, layout: str) -> None:
        self.sample_rate = sample_rate
        self.layout = layout
        self._resampler: av.AudioResampler | None = None

    def convert(self, frame: AudioFrame) -> list[tuple[int, np.ndarray]]:
        if (
            frame.format.name == "s16"
            and frame.layout.name == self.layout
            and frame.sample_rate == self.sample_rate
        ):
            return [(self.sample_rate, _packed_s16(frame))]
        if (
            frame.format.name == "s16"
            and frame.layout.name == "stereo"
            and self.layout == "mono"
            and frame.sample_rate == self.sample_rate
        ):
            # Opus decodes to stereo: the downmix alone in numpy is cheaper than
            # libswresample, with the same result ((L + R) / 2, halves rounded up).
            pairs = _packed_s16(frame)[0].astype(np.int32)
            mono = (pairs[0::2] + pairs[1::2] + 1) >> 1
            return [(self.sample_rate, mono.astype(np.int16).reshape(1, -1))]
        if self._resampler is None:
            self._resampler = av.AudioResampler(
                format="s16", layout=self.layout, rate=self.sample_rate
            )
        return [(self.sample_rate, f.to_ndarray()) for f in self._resampler.resample(frame)]


def _packed_s16(frame: AudioFrame) -> np.ndarray:
    """A packed s16 frame's samples, shape ``(1, samples x channels)``, as
    ``frame.to_ndarray()`` gives them: read straight from the plane, which costs less
    than half of what ``to_ndarray`` (a ``vstack`` of planes) does per 20 ms frame."""
    count = frame.samples * len(frame.layout.channels)
    plane: Any = frame.planes[0]  # a buffer; the stubs do not say so
    samples: np.ndarray = np.frombuffer(plane, dtype=np.int16, count=count)
    return samples.reshape(1, -1).copy()


def _to_int16_mono(array: np.ndarray, layout: str | None) -> np.ndarray:
    """Any accepted handler array -> 1-D int16 mono samples."""
    a: np.ndarray = np.asarray(array)
    if a.dtype.kind == "f":
        a = (np.clip(a, -1.0, 1.0) * 32767).astype(np.int16)
    elif a.dtype != np.int16:
        raise TypeError(f"audio arrays must be int16 or float, got {a.dtype}")
    if a.ndim == 1:
        channels = 2 if layout == "stereo" else 1
        return a if channels == 1 else _mix(a.reshape(-1, 2), axis=1)
    if a.ndim != 2:
        raise TypeError(f"audio arrays must be 1-D or 2-D, got shape {a.shape}")
    if a.shape[0] == 1:
        row: np.ndarray = a[0]
        if layout == "stereo":
            return _mix(row.reshape(-1, 2), axis=1)
        return row
    if a.shape[0] <= 8:  # (channels, n) planar
        return _mix(a, axis=0)
    if a.shape[1] <= 8:  # (n, channels)
        return _mix(a, axis=1)
    raise TypeError(f"cannot read audio array of shape {a.shape}")


def _mix(a: np.ndarray, axis: int) -> np.ndarray:
    """Channels averaged into one int16 row."""
    mixed: np.ndarray = a.mean(axis=axis).astype(np.int16)
    return mixed


class AudioOutput:
    """A bounded buffer of output audio, read in 20 ms frames at the output rate.

    ``push`` accepts what handlers return; ``read_frame`` gives the next frame
    or None when less than one frame is buffered. ``clear`` drops everything
    (barge-in). Waiters on ``space`` are woken as frames are read, so the
    emit pump fills the buffer only as fast as it is played.
    """

    def __init__(self, sample_rate: int, max_seconds: float = 30.0) -> None:
        self.sample_rate = sample_rate
        self.frame_size = int(sample_rate * AUDIO_PTIME)
        self.max_samples = int(sample_rate * max_seconds)
        self._chunks: deque[np.ndarray] = deque()
        self._samples = 0
        self._resamplers: dict[int, av.AudioResampler] = {}
        self.space = asyncio.Event()
        self.space.set()
        self.pushed = Arrivals()  # counts pushes: readers wait on it for audio

    @property
    def buffered_seconds(self) -> float:
        """Seconds of audio that will be played: whole 20 ms frames only.

        A tail shorter than a frame is played only once more audio completes
        it, so it does not count: waiting for the buffer to drain (a finished
        generator's last audio) must not wait for it for ever.
        """
        return (self._samples - self._samples % self.frame_size) / self.sample_rate

    def push(self, sample_rate: int, array: np.ndarray, layout: str | None = None) -> None:
        samples = _to_int16_mono(array, layout)
        if sample_rate != self.sample_rate:
            samples = self._resample(sample_rate, samples)
        if not len(samples):
            return
        self._chunks.append(samples)
        self._samples += len(samples)
        self.pushed.tick()
        # Bounded: a handler that produces faster than real time loses its oldest audio.
        while self._samples > self.max_samples:
            self._samples -= len(self._chunks.popleft())

    def _resample(self, rate: int, samples: np.ndarray) -> np.ndarray:
        resampler = self._resamplers.get(rate)
        if resampler is None:
            resampler = av.AudioResampler(format="s16", layout="mono", rate=self.sample_rate)
            self._resamplers[rate] = resampler
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        out = [f.to_ndarray()[0] for f in resampler.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, np.int16)

    def read(self) -> np.ndarray | None:
        """The next ``frame_size`` samples, or None if fewer are buffered."""
        if self._samples < self.frame_size:
            return None
        need = self.frame_size
        parts = []
        while need:
            chunk = self._chunks[0]
            if len(chunk) <= need:
                parts.append(self._chunks.popleft())
                need -= len(chunk)
            else:
                parts.append(chunk[:need])
                self._chunks[0] = chunk[need:]
                need = 0
        self._samples -= self.frame_size
        self.space.set()
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def clear(self) -> None:
        self._chunks.clear()
        self._samples = 0
        self.space.set()


def audio_frame(samples: np.ndarray, sample_rate: int, pts: int) -> AudioFrame:
    # One copy into the frame's plane; from_ndarray checks and copies more (2x the time).
    frame = AudioFrame(format="s16", layout="mono", samples=len(samples))
    # Any buffer will do; PyAV's stub says bytes.
    frame.planes[0].update(np.ascontiguousarray(samples, np.int16))  # type: ignore[arg-type]
    frame.sample_rate = sample_rate
    frame.pts = pts
    frame.time_base = fractions.Fraction(1, sample_rate)
    return frame


# PyAV 17 made libswscale conversions multithreaded, by default over as many slice
# threads as the machine has cores. A session's conversions run on the handler pool
# beside other sessions', so spreading one frame over every core buys no throughput
# and costs CPU (a 640x480 frame on two cores: 28 % more for bgr24 -> yuv420p, 21 %
# more for yuv420p -> bgr24, bench/convert_cost.py). Older PyAV is single-threaded
# and has no such argument.
_ONE_THREAD: dict[str, Any] = {"threads": 1} if int(av.__version__.split(".")[0]) >= 17 else {}


def video_to_array(frame: VideoFrame, fmt: str) -> np.ndarray:
    return frame.to_ndarray(format=fmt, **_ONE_THREAD)


_threads = threading.local()


def _reformatter() -> VideoReformatter:
    """This thread's reformatter. ``VideoFrame.reformat`` builds a libswscale context
    for every frame; a reused reformatter keeps it while the size and formats stay the
    same (about 2 % of the cost at 640x480, bench/README.md). One per thread: handler
    calls convert on several threads at once, and a context is not thread-safe.

    Each context converts on its calling thread only (``_ONE_THREAD``): with PyAV's
    default every context has a pool of libswscale slice threads, and a context kept
    by a long-lived pool thread would keep its pool too, native threads that no
    session owns (tests/test_leaks.py counts them)."""
    reformatter: VideoReformatter | None = getattr(_threads, "reformatter", None)
    if reformatter is None:
        reformatter = _threads.reformatter = VideoReformatter()
    return reformatter


def array_to_video(array: Any, fmt: str, like: VideoFrame | None = None) -> VideoFrame:
    """A handler's array -> VideoFrame, keeping the input frame's timing."""
    a: np.ndarray = np.asarray(array)
    if a.ndim != 3 or a.shape[2] != 3:
        raise TypeError(f"video handlers must return HxWx3 arrays, got shape {a.shape}")
    if a.dtype != np.uint8:
        if a.dtype.kind == "f" and a.size and float(np.nanmax(a)) <= 1.0:
            a = a * 255.0
        a = np.clip(a, 0, 255).astype(np.uint8)
    # Codecs need even dimensions.
    h, w = a.shape[0] & ~1, a.shape[1] & ~1
    if (h, w) != a.shape[:2]:
        a = a[:h, :w]
    # The encoders take yuv420p: converting here (in the handler pool) instead of in
    # aiortc's encoder costs the same, and the frame a session keeps to repeat is
    # half the size of an RGB one.
    frame = _reformatter().reformat(
        VideoFrame.from_ndarray(np.ascontiguousarray(a), format=fmt),
        format="yuv420p",
        **_ONE_THREAD,
    )
    if like is not None:
        frame.pts = like.pts
        frame.time_base = like.time_base
    return frame


def split_result(result: Any) -> tuple[Any, Any]:
    """Split a handler's return value into ``(media, extra)``.

    ``extra`` is ``AdditionalOutputs``, ``CloseStream`` or None. Media is an
    ndarray (video), an audio chunk tuple, or None.
    """
    from django_rtcstream.handlers import AdditionalOutputs, CloseStream

    if isinstance(result, (AdditionalOutputs, CloseStream)):
        return None, result
    if isinstance(result, tuple):
        if len(result) == 2 and isinstance(result[1], (AdditionalOutputs, CloseStream)):
            return result[0], result[1]
        if len(result) in (2, 3) and isinstance(result[1], np.ndarray):
            return result, None  # a bare audio chunk (sr, array[, layout])
    return result, None
