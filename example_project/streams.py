"""The example streams: one per modality x mode, plus one with additional inputs.

Every handler is small and its effect is easy to see or hear:

=============  ===========  ============  =============================================
name           modality     mode          handler
=============  ===========  ============  =============================================
flip           video        send-receive  function: the frame upside down
video-counter  video        send          function: counts frames, reports every 30th
pattern        video        receive       generator function: a moving color pattern
echo           audio        send-receive  StreamHandler: plays the input back
level          audio        send          StreamHandler: reports the input's RMS level
tone           audio        receive       generator function: a 440 Hz tone
av-echo        audio-video  send-receive  AudioVideoStreamHandler: echo + flip
av-counter     audio-video  send          AudioVideoStreamHandler: counts, reports
av-tone        audio-video  receive       AudioVideoStreamHandler: tone + pattern
brightness     video        send-receive  function fn(frame, gain, mirror) with inputs
=============  ===========  ============  =============================================
"""

from __future__ import annotations

import math
import queue
import threading
from collections import defaultdict

import numpy as np

from django_rtcstream import (
    AdditionalOutputs,
    AudioVideoStreamHandler,
    Checkbox,
    Slider,
    Stream,
    StreamHandler,
    get_current_context,
)

WIDTH, HEIGHT = 320, 240


# -- helpers -----------------------------------------------------------------------------


def moving_pattern(t: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """A color gradient with a white bar sweeping left to right (frame ``t``)."""
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    image = np.empty((height, width, 3), np.uint8)
    image[..., 0] = ((x + 4 * t) % 256).astype(np.uint8)  # blue drifts
    image[..., 1] = y.astype(np.uint8)  # green top to bottom
    image[..., 2] = (255 - x).astype(np.uint8)  # red right to left
    bar = (t * 4) % width
    image[:, bar : bar + 12] = 255
    return image


def sine(
    frequency: float, sample_rate: int, start: int, n: int, amplitude: float = 0.3
) -> np.ndarray:
    """``n`` float32 samples of a sine tone, starting at sample ``start``."""
    t = (np.arange(n) + start) / sample_rate
    return (np.sin(2 * math.pi * frequency * t) * amplitude).astype(np.float32)


def rms(array: np.ndarray) -> float:
    """RMS level of int16 (or float) samples, 0..1."""
    a = array.astype(np.float32)
    if array.dtype == np.int16:
        a /= 32768.0
    return float(np.sqrt(np.mean(a**2))) if a.size else 0.0


# -- video -------------------------------------------------------------------------------


def flip_frame(frame: np.ndarray) -> np.ndarray:
    """video / send-receive: the frame upside down."""
    return np.flip(frame, axis=0)


_counts: dict[str, int] = defaultdict(int)
_counts_lock = threading.Lock()


def count_frames(frame: np.ndarray):
    """video / send: count this session's frames; every 30th, report the count and brightness."""
    webrtc_id = get_current_context().webrtc_id
    with _counts_lock:
        _counts[webrtc_id] += 1
        n = _counts[webrtc_id]
    if n % 30 == 0:
        return AdditionalOutputs({"frames": n, "brightness": round(float(frame.mean()), 1)})
    return None


def pattern_generator():
    """video / receive: a generator of frames (paced at the stream's 30 fps)."""
    t = 0
    while True:
        yield moving_pattern(t)
        t += 1


def adjust_brightness(frame: np.ndarray, gain: float, mirror: bool) -> np.ndarray:
    """video / send-receive with additional inputs: ``gain`` (0..2) and ``mirror``."""
    out = np.clip(frame.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    return np.flip(out, axis=1) if mirror else out


# -- audio -------------------------------------------------------------------------------


class Echo(StreamHandler):
    """audio / send-receive: plays what it hears back to the caller."""

    def __init__(self) -> None:
        super().__init__(input_sample_rate=48000, output_sample_rate=48000)
        self.queue: queue.Queue = queue.Queue(maxsize=50)

    def copy(self) -> Echo:
        return Echo()

    def receive(self, frame) -> None:
        try:
            self.queue.put_nowait(frame)
        except queue.Full:  # the caller talks faster than we play: drop
            pass

    def emit(self):
        try:
            return self.queue.get(timeout=0.05)
        except queue.Empty:
            return None  # nothing yet


class LevelMeter(StreamHandler):
    """audio / send: reports the input's RMS level twice a second."""

    def __init__(self) -> None:
        super().__init__(input_sample_rate=16000)
        self.levels: list[float] = []
        self.pending: queue.Queue = queue.Queue()

    def copy(self) -> LevelMeter:
        return LevelMeter()

    def receive(self, frame) -> None:
        _, array = frame
        self.levels.append(rms(array))
        if len(self.levels) >= 25:  # 25 x 20 ms
            level = max(self.levels)
            self.levels.clear()
            self.pending.put(AdditionalOutputs({"rms": round(level, 4)}))

    def emit(self):
        try:
            return self.pending.get(timeout=0.05)
        except queue.Empty:
            return None


def tone_generator():
    """audio / receive: a generator of ``(sample_rate, float32 array)`` chunks, 20 ms each."""
    sample_rate, n, start = 24000, 480, 0
    while True:
        yield sample_rate, sine(440.0, sample_rate, start, n)
        start += n


# -- audio + video -----------------------------------------------------------------------


class AVEcho(AudioVideoStreamHandler):
    """audio-video / send-receive: audio echoed back, video flipped."""

    def __init__(self) -> None:
        super().__init__(input_sample_rate=48000, output_sample_rate=48000)
        self.audio: queue.Queue = queue.Queue(maxsize=50)
        self.frame: np.ndarray | None = None

    def copy(self) -> AVEcho:
        return AVEcho()

    def receive(self, frame) -> None:
        try:
            self.audio.put_nowait(frame)
        except queue.Full:
            pass

    def emit(self):
        try:
            return self.audio.get(timeout=0.05)
        except queue.Empty:
            return None

    def video_receive(self, frame: np.ndarray) -> None:
        self.frame = frame

    def video_emit(self):
        return None if self.frame is None else np.flip(self.frame, axis=0)


class AVCounter(AudioVideoStreamHandler):
    """audio-video / send: counts audio and video frames, reports each second."""

    def __init__(self) -> None:
        super().__init__(input_sample_rate=16000)
        self.audio_frames = 0
        self.video_frames = 0
        self.pending: queue.Queue = queue.Queue()

    def copy(self) -> AVCounter:
        return AVCounter()

    def report(self) -> AdditionalOutputs:
        return AdditionalOutputs(
            {"audio_frames": self.audio_frames, "video_frames": self.video_frames}
        )

    def receive(self, frame) -> None:
        self.audio_frames += 1
        if self.audio_frames % 50 == 0:  # every second of audio
            self.pending.put(self.report())

    def emit(self):
        try:
            return self.pending.get(timeout=0.05)
        except queue.Empty:
            return None

    def video_receive(self, frame: np.ndarray):
        self.video_frames += 1
        if self.video_frames % 30 == 0:
            return self.report()
        return None

    def video_emit(self):  # send mode: nothing goes back
        return None


class AVTone(AudioVideoStreamHandler):
    """audio-video / receive: a 440 Hz tone from ``emit``, a moving pattern from ``video_emit``."""

    def __init__(self) -> None:
        super().__init__(output_sample_rate=24000)
        self.sample = 0
        self.t = 0

    def copy(self) -> AVTone:
        return AVTone()

    def receive(self, frame) -> None:  # receive mode: no input
        pass

    def emit(self):
        chunk = sine(440.0, 24000, self.sample, 480)
        self.sample += 480
        return 24000, chunk

    def video_receive(self, frame: np.ndarray) -> None:
        pass

    def video_emit(self):
        self.t += 1
        return moving_pattern(self.t)


# -- the streams (registered by name in settings.RTCSTREAM["STREAMS"]) --------------------

flip = Stream(flip_frame, modality="video", mode="send-receive")
video_counter = Stream(count_frames, modality="video", mode="send")
pattern = Stream(pattern_generator, modality="video", mode="receive")

echo = Stream(Echo(), modality="audio", mode="send-receive")
level = Stream(LevelMeter(), modality="audio", mode="send")
tone = Stream(tone_generator, modality="audio", mode="receive")

av_echo = Stream(AVEcho(), modality="audio-video", mode="send-receive")
av_counter = Stream(AVCounter(), modality="audio-video", mode="send")
av_tone = Stream(AVTone(), modality="audio-video", mode="receive")

brightness = Stream(
    adjust_brightness,
    modality="video",
    mode="send-receive",
    additional_inputs=[
        Slider(minimum=0, maximum=2, value=1.0, step=0.1, label="Gain"),
        Checkbox(value=False, label="Mirror"),
    ],
)
