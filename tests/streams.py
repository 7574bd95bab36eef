"""Streams of the test project: one per modality x mode, plus limits and faults.

Handlers note what happens to them in ``EVENTS`` so tests (which run the
server in the same process) can check start_up/shutdown and inputs; a server
in another process also appends them to the file ``RTCSTREAM_TEST_EVENTS``
names, one ``webrtc_id event`` line each.
"""

from __future__ import annotations

import asyncio
import math
import os
import queue
import threading
import time
from collections import defaultdict

import numpy as np

from django_rtcstream import (
    AdditionalOutputs,
    AsyncStreamHandler,
    AudioVideoStreamHandler,
    Slider,
    Stream,
    StreamHandler,
    VideoStreamHandler,
    WebRTCError,
    get_current_context,
    wait_for_item,
    warn,
)

EVENTS: list[tuple[str, str]] = []
SEEN: dict[str, int] = defaultdict(int)


def log(event: str) -> None:
    webrtc_id = get_current_context().webrtc_id
    EVENTS.append((webrtc_id, event))
    if os.environ.get("RTCSTREAM_TEST_EVENTS"):
        with open(os.environ["RTCSTREAM_TEST_EVENTS"], "a") as out:
            out.write(f"{webrtc_id} {event}\n")


def _record_signals(path: str) -> None:
    """Multi-worker tests: every session signal, as a JSON line naming the worker it ran on."""
    import json

    from django_rtcstream import signals

    def writer(name):
        def receive(sender, **kwargs):
            line = {
                "signal": name,
                "worker": os.environ.get("RTCSTREAM_WORKER_NAME"),
                "stream": sender.name,
                **{k: v for k, v in kwargs.items() if k not in ("signal", "stream")},
            }
            with open(path, "a") as out:
                out.write(json.dumps(line, default=str) + "\n")

        return receive

    for name in ("session_started", "session_ended", "inputs_changed"):
        getattr(signals, name).connect(writer(name), weak=False)


if os.environ.get("RTCSTREAM_TEST_SIGNALS"):
    _record_signals(os.environ["RTCSTREAM_TEST_SIGNALS"])


def flip_frame(frame):
    return np.flip(frame, axis=0)


def scale(frame, level):
    return (frame.astype(np.float32) * level).astype(np.uint8)


def mix(frame, a, b):
    """Two inputs, for tests that set them independently (registered by those tests)."""
    return frame


REPORTED: dict[str, float] = {}


def report_level(frame, level):
    """Passes frames through and reports each new ``level`` once, as an output."""
    webrtc_id = get_current_context().webrtc_id
    if REPORTED.get(webrtc_id) != level:
        REPORTED[webrtc_id] = level
        return frame, AdditionalOutputs(level)
    return frame


def count_frames(frame, every=5):
    webrtc_id = get_current_context().webrtc_id
    SEEN[webrtc_id] += 1
    if SEEN[webrtc_id] == 1:
        warn("first frame seen")
    if SEEN[webrtc_id] % every == 0:
        return AdditionalOutputs(SEEN[webrtc_id], float(frame.mean()))
    return None


def gray_pattern(level=200):
    while True:
        yield np.full((240, 320, 3), int(level), np.uint8)


def tone_generator(frequency=440.0):
    sr, n = 24000, 480
    phase = 0
    while True:
        t = (np.arange(n) + phase) / sr
        phase += n
        yield sr, (np.sin(2 * math.pi * frequency * t) * 0.5).astype(np.float32)


class Echo(StreamHandler):
    """Echoes audio back, multiplied by its `gain` input."""

    def __init__(self) -> None:
        super().__init__(input_sample_rate=48000, output_sample_rate=48000)
        self.queue: queue.Queue = queue.Queue(maxsize=100)

    def copy(self):
        return Echo()

    def start_up(self):
        log("start_up")

    def shutdown(self):
        log("shutdown")

    def receive(self, frame):
        sr, array = frame
        try:
            self.queue.put_nowait((sr, array))
        except queue.Full:
            pass

    def on_dtmf(self, digit):
        """Phone key '#': stop talking (barge-in), dropping queued audio."""
        log(f"dtmf:{digit}")
        if digit == "#":
            with self.queue.mutex:
                self.queue.queue.clear()
            self.clear_queue()

    def emit(self):
        try:
            sr, array = self.queue.get(timeout=0.05)
        except queue.Empty:
            return None
        gain = self.latest_args[1] if len(self.latest_args) > 1 else 1.0
        return sr, (array.astype(np.float32) * gain).astype(np.int16)


class AsyncCounter(AsyncStreamHandler):
    """Send mode: counts input frames, reports every 25th as an output."""

    def __init__(self) -> None:
        super().__init__(input_sample_rate=16000)
        self.count = 0
        self.pending = 0

    def copy(self):
        return AsyncCounter()

    async def start_up(self):
        log("start_up")

    async def shutdown(self):
        log("shutdown")

    async def receive(self, frame):
        sr, array = frame
        assert sr == 16000 and array.dtype == np.int16
        self.count += 1
        if self.count % 25 == 0:
            self.pending = self.count

    async def emit(self):
        import asyncio

        await asyncio.sleep(0.02)
        if self.pending:
            value, self.pending = self.pending, 0
            return AdditionalOutputs(value)
        return None


class AVEcho(AudioVideoStreamHandler):
    """Audio echo plus video flip; in receive mode a tone and a gray pattern."""

    def __init__(self) -> None:
        super().__init__(input_sample_rate=48000, output_sample_rate=48000)
        self.audio: queue.Queue = queue.Queue(maxsize=100)
        self.frame = None
        self.video_seen = 0
        self.audio_seen = 0
        self.phase = 0

    def copy(self):
        return AVEcho()

    def start_up(self):
        log("start_up")

    def shutdown(self):
        log("shutdown")

    def receive(self, frame):
        self.audio_seen += 1
        try:
            self.audio.put_nowait(frame)
        except queue.Full:
            pass

    def emit(self):
        try:
            return self.audio.get(timeout=0.05)
        except queue.Empty:
            pass
        if self.audio_seen == 0:  # receive mode: generate a 440 Hz tone
            t = (np.arange(960) + self.phase) / 48000
            self.phase += 960
            return 48000, (np.sin(2 * math.pi * 440 * t) * 0.5).astype(np.float32)
        return None

    def video_receive(self, frame):
        self.video_seen += 1
        self.frame = frame
        if self.video_seen % 10 == 0:
            return AdditionalOutputs("video", self.video_seen)

    def video_emit(self):
        if self.frame is None:
            return np.full((240, 320, 3), 200, np.uint8)
        return np.flip(self.frame, axis=0)


class Boom(Exception):
    pass


def faulty_frame(frame):
    webrtc_id = get_current_context().webrtc_id
    SEEN[webrtc_id] += 1
    if SEEN[webrtc_id] > 5:
        raise Boom("the handler failed on purpose")
    return frame


class FaultyEcho(Echo):
    """An echo whose ``receive`` fails on the sixth frame (runs in the handler pool)."""

    def copy(self):
        return FaultyEcho()

    def receive(self, frame):
        SEEN[get_current_context().webrtc_id] += 1
        if SEEN[get_current_context().webrtc_id] > 5:
            raise Boom("receive failed on purpose")
        super().receive(frame)


def slow_flip(frame):
    import time

    SEEN[get_current_context().webrtc_id] += 1
    time.sleep(0.1)  # three frame periods at 30 fps
    return np.flip(frame, axis=0)


slow = Stream(slow_flip, modality="video", mode="send-receive")
flip = Stream(flip_frame, modality="video", mode="send-receive")
gain = Stream(
    scale,
    modality="video",
    mode="send-receive",
    additional_inputs=[Slider(minimum=0, maximum=1, value=1.0, label="Level")],
)
# tests/test_nginx.py: one output per input change, so an output that nginx held back
# would never be followed by another.
report = Stream(
    report_level,
    modality="video",
    mode="send-receive",
    additional_inputs=[Slider(minimum=0, maximum=100, step=1, value=0, label="Level")],
)
video_send = Stream(count_frames, modality="video", mode="send")
video_receive = Stream(
    gray_pattern,
    modality="video",
    mode="receive",
    additional_inputs=[Slider(minimum=0, maximum=255, step=1, value=200, label="Level")],
)
echo = Stream(
    Echo(),
    modality="audio",
    mode="send-receive",
    additional_inputs=[Slider(minimum=0, maximum=1, value=1.0, label="Gain")],
)
audio_send = Stream(AsyncCounter(), modality="audio", mode="send")
tone = Stream(
    tone_generator,
    modality="audio",
    mode="receive",
    additional_inputs=[Slider(minimum=50, maximum=4000, value=440, label="Frequency")],
)
av = Stream(AVEcho(), modality="audio-video", mode="send-receive")
av_send = Stream(AVEcho(), modality="audio-video", mode="send")
av_receive = Stream(AVEcho(), modality="audio-video", mode="receive")
limited = Stream(Echo(), modality="audio", mode="send-receive", concurrency_limit=1)
# Registered by tests/test_load.py (50 simultaneous offers against a limit of 10).
limited_ten = Stream(Echo(), modality="audio", mode="send-receive", concurrency_limit=10)
timed = Stream(Echo(), modality="audio", mode="send-receive", time_limit=1.5)
faulty = Stream(faulty_frame, modality="video", mode="send-receive")
mixer = Stream(
    mix,
    modality="video",
    mode="send-receive",
    additional_inputs=[
        Slider(minimum=0, maximum=1, value=0.5, label="A"),
        Slider(minimum=0, maximum=1, value=0.5, label="B"),
    ],
)
faulty_audio = Stream(FaultyEcho(), modality="audio", mode="send-receive")


class BlockingEcho(StreamHandler):
    """FastRTC's documented echo: ``emit`` blocks on ``queue.get()``, for ever once the
    session has ended (no timeout, no way out)."""

    def __init__(self) -> None:
        super().__init__(input_sample_rate=48000, output_sample_rate=48000)
        self.queue: queue.Queue = queue.Queue()

    def copy(self):
        return BlockingEcho()

    def receive(self, frame):
        self.queue.put(frame)

    def emit(self):
        return self.queue.get()


class SlowStartEcho(AsyncStreamHandler):
    """An async echo whose ``start_up`` keeps going for 30 s (an outside connection)."""

    def __init__(self) -> None:
        super().__init__(input_sample_rate=48000, output_sample_rate=48000)
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=100)

    def copy(self):
        return SlowStartEcho()

    async def start_up(self):
        log("start_up")
        try:
            await asyncio.sleep(30)
            log("start_up_done")
        except asyncio.CancelledError:
            log("start_up_cancelled")
            raise

    async def shutdown(self):
        log("shutdown")

    async def receive(self, frame):
        if not self.queue.full():
            self.queue.put_nowait(frame)

    async def emit(self):
        return await wait_for_item(self.queue, 0.05)


class FailingStart(SlowStartEcho):
    def copy(self):
        return FailingStart()

    async def start_up(self):
        log("start_up")
        raise Boom("start_up failed on purpose")


class ChunkyReply(StreamHandler):
    """Answers the first input with a 2 s reply made slower than real time: 0.2 s chunks,
    each 0.1 s late, so the output runs dry between chunks."""

    def __init__(self) -> None:
        super().__init__(input_sample_rate=8000, output_sample_rate=8000)
        self.heard = threading.Event()
        self.chunks = 10

    def copy(self):
        return ChunkyReply()

    def receive(self, frame):
        self.heard.set()

    def emit(self):
        if not self.heard.wait(0.05) or not self.chunks:
            return None
        if self.chunks < 10:
            time.sleep(0.3)
        self.chunks -= 1
        t = np.arange(1600) / 8000
        return 8000, (np.sin(2 * math.pi * 440 * t) * 8000).astype(np.int16)


def refuse_frame(frame):
    raise WebRTCError("No face in view: move closer to the camera")


def steps(num_steps):
    """FastRTC FAQ's shape: an integer slider drives range()."""
    for i in range(num_steps):
        yield np.full((240, 320, 3), 40 * (i + 1), np.uint8)
    while True:
        yield np.full((240, 320, 3), 250, np.uint8)


class SocketAware(Echo):
    """Notes which socket carries it (FastRTC's ``Context.websocket``)."""

    def copy(self):
        return SocketAware()

    def start_up(self):
        websocket = get_current_context().websocket
        log(f"websocket:{type(websocket).__name__}")


class SwallowsCancel(AsyncStreamHandler):
    """An async ``emit`` that swallows its first cancellation, as Python 3.11's
    ``asyncio.wait_for`` does when its result arrives together with the cancellation;
    with ``stubborn``, every one (code that catches ``CancelledError`` and goes on)."""

    def __init__(self, stubborn: bool = False) -> None:
        super().__init__(input_sample_rate=48000, output_sample_rate=48000)
        self.stubborn = stubborn
        self.swallowed = 0

    def copy(self):
        return SwallowsCancel(self.stubborn)

    async def receive(self, frame):
        pass

    async def emit(self):
        if self.stubborn:
            while IGNORE_CANCELS[0]:  # the test clears it, so its loop can end
                try:
                    await asyncio.sleep(0.05)
                except asyncio.CancelledError:
                    self.swallowed += 1
                    log("swallowed")
            raise asyncio.CancelledError  # let the task that was left behind end
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if self.swallowed:
                raise
            self.swallowed += 1
            log("swallowed")
        return None


IGNORE_CANCELS = [True]


blocking_echo = Stream(BlockingEcho(), modality="audio", mode="send-receive")
swallows_cancel = Stream(SwallowsCancel(), modality="audio", mode="send-receive")
ignores_cancel = Stream(SwallowsCancel(stubborn=True), modality="audio", mode="send-receive")
socket_aware = Stream(SocketAware(), modality="audio", mode="send-receive")
slow_start = Stream(SlowStartEcho(), modality="audio", mode="send-receive")
failing_start = Stream(FailingStart(), modality="audio", mode="send-receive")
chunky_reply = Stream(ChunkyReply(), modality="audio", mode="send-receive")
refuse = Stream(refuse_frame, modality="video", mode="send-receive")
int_steps = Stream(
    steps,
    modality="video",
    mode="receive",
    additional_inputs=[Slider(minimum=1, maximum=5, step=1, value=2, label="Steps")],
)
in_order = Stream(
    VideoStreamHandler(slow_flip, skip_frames=False), modality="video", mode="send-receive"
)
