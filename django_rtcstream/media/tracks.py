"""aiortc tracks of the runtime: generic, the session decides what they produce.

- ``LatestFrame`` drains a remote track for as long as it lives and keeps only
  the newest frame, so a slow handler skips stale frames instead of queueing
  them (aiortc's remote tracks have unbounded queues). ``EveryFrame`` keeps them
  all, in order, up to a bound (``VideoStreamHandler(skip_frames=False)``).
- ``ProducedVideoTrack`` returns whatever its ``produce`` coroutine makes.
- ``PacedAudioTrack`` plays an ``AudioOutput`` buffer at real time, 20 ms a
  frame, with silence when the handler has nothing to say.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

from django_rtcstream.media.convert import AUDIO_PTIME, AudioOutput, audio_frame

VIDEO_CLOCK = 90000


class LatestFrame:
    """The newest frame of a remote track; older unread frames are dropped."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.track = track
        self.frame: VideoFrame | AudioFrame | None = None
        self.seq = 0
        self.received = 0
        self.dropped = 0
        self.ended = False
        self._read_seq = 0
        self._event = asyncio.Event()

    async def run(self) -> None:
        try:
            while True:
                # A decoded remote track gives frames, never packets (no cast per frame).
                self._keep(await self.track.recv())  # type: ignore[arg-type]
                self.received += 1
                self._event.set()
        except MediaStreamError:
            pass
        finally:
            self.ended = True
            self._event.set()

    def _keep(self, frame: VideoFrame | AudioFrame) -> None:
        if self.seq > self._read_seq:
            self.dropped += 1
        self.frame = frame
        self.seq += 1

    async def next(self) -> VideoFrame | AudioFrame:
        """The newest frame not returned before; waits for one."""
        while self.seq <= self._read_seq:
            if self.ended:
                raise MediaStreamError
            self._event.clear()
            await self._event.wait()
        self._read_seq = self.seq
        frame, self.frame = self.frame, None  # the reader holds it now, not us too
        assert frame is not None
        return frame


class EveryFrame(LatestFrame):
    """Every frame of a remote track, in order, up to ``limit`` unread ones.

    For ``VideoStreamHandler(skip_frames=False)``: the function sees every frame,
    so a slow one falls behind, but by at most ``limit`` frames (then the oldest
    unread frame is dropped), never without bound as in FastRTC.
    """

    def __init__(self, track: MediaStreamTrack, limit: int) -> None:
        super().__init__(track)
        self.limit = max(1, limit)
        self._frames: deque[VideoFrame | AudioFrame] = deque()

    def _keep(self, frame: VideoFrame | AudioFrame) -> None:
        if len(self._frames) >= self.limit:
            self._frames.popleft()
            self.dropped += 1
        self._frames.append(frame)

    async def next(self) -> VideoFrame | AudioFrame:
        """The oldest frame not returned before; waits for one."""
        while not self._frames:
            if self.ended:
                raise MediaStreamError
            self._event.clear()
            await self._event.wait()
        return self._frames.popleft()


class ProducedVideoTrack(MediaStreamTrack):
    """A video track whose frames come from a session-supplied coroutine."""

    kind = "video"

    def __init__(self, produce: Callable[[], Awaitable[VideoFrame]]) -> None:
        super().__init__()
        self._produce = produce
        self.sent = 0

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._produce()
        self.sent += 1
        return frame


class VideoClock:
    """Paces generated video at ``fps`` and stamps frames with a 90 kHz clock."""

    def __init__(self, fps: int) -> None:
        self.period = 1.0 / max(1, fps)
        self._start: float | None = None
        self._n = 0

    async def tick(self, frame: VideoFrame) -> VideoFrame:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._n += 1
            wait = self._start + self._n * self.period - now
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -0.5:  # fell far behind (slow generator): restart the clock
                self._start, self._n = now, 0
        frame.pts = int((time.monotonic() - self._start) * VIDEO_CLOCK) if self._n else 0
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return frame


class PacedAudioTrack(MediaStreamTrack):
    """Plays an ``AudioOutput`` at real time; silence fills the gaps.

    Audio that is ready goes out at once, up to ``LEAD`` ahead of the real-time
    clock, so an echo-like handler's answer does not wait for the next 20 ms
    tick; when nothing is ready the track waits for audio until the frame's
    deadline and then sends silence. A producer faster than real time is held
    to the clock (plus the lead).
    """

    kind = "audio"
    LEAD = 0.04

    def __init__(self, buffer: AudioOutput) -> None:
        super().__init__()
        self.buffer = buffer
        self.sent = 0
        self._start: float | None = None
        self._pts = 0
        self._silence = np.zeros(buffer.frame_size, np.int16)

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        rate = self.buffer.sample_rate
        if self._start is None:
            self._start = loop.time()
        else:
            self._pts += self.buffer.frame_size
        deadline = self._start + self._pts / rate
        if loop.time() - deadline > 10 * AUDIO_PTIME:  # the loop stalled: don't burst
            self._start = loop.time() - self._pts / rate
            deadline = self._start + self._pts / rate
        seen = self.buffer.pushed.count
        samples = self.buffer.read()
        if samples is None:
            wait = deadline - loop.time()
            if wait > 0:
                await self.buffer.pushed.wait_after(seen, wait)
                samples = self.buffer.read()
            if samples is None:
                wait = deadline - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
        else:
            early = deadline - loop.time() - self.LEAD
            if early > 0:
                await asyncio.sleep(early)
        if samples is None:
            samples = self._silence
        else:
            self.sent += 1
        return audio_frame(samples, rate, self._pts)


class PushedAudioTrack(MediaStreamTrack):
    """Audio a WebSocket consumer pushes in, read by the session like a WebRTC track.

    Bounded: if the handler falls more than ``maxsize`` frames behind, the
    oldest frames are dropped (and counted) rather than queued without end.

    A reader that wants the samples as they are may set ``sink`` instead of calling
    ``recv``: the producer (``media.socket_audio.SocketAudioIn``) then hands it each
    message's int16 samples at ``sample_rate``, with no frame built and no task woken
    (see ``media.audio_pipelines.AudioReceiver``). The sink counts what it drops in
    ``dropped`` too.
    """

    kind = "audio"

    def __init__(self, maxsize: int = 50) -> None:
        super().__init__()
        self._queue: asyncio.Queue[AudioFrame | None] = asyncio.Queue(maxsize)
        self.maxsize = maxsize
        self.dropped = 0
        self.sample_rate = 0  # set by the producer (SocketAudioIn)
        self.sink: Callable[[np.ndarray], None] | None = None

    def take_queued(self) -> list[AudioFrame]:
        """The frames pushed and not yet read (a reader that sets ``sink`` takes these
        first, so nothing is handled out of order)."""
        frames = []
        while not self._queue.empty():
            frame = self._queue.get_nowait()
            if frame is not None:
                frames.append(frame)
        return frames

    def push(self, frame: AudioFrame | None) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(frame)

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._queue.get()
        if frame is None:
            self.stop()
            raise MediaStreamError
        return frame


async def paced_frames(buffer: AudioOutput, lead: int = 3) -> AsyncIterator[np.ndarray | None]:
    """Buffered audio in 20 ms frames at real time, for sockets (no silence is invented).

    The first ``lead`` frames of a burst go out at once so the far end has a
    little cushion; after that one frame per 20 ms. A producer that is a little
    late keeps the clock; only when nothing arrives by the next frame's
    deadline is the burst over: the generator yields None once, waits for
    more audio, and starts a new burst.
    """
    loop = asyncio.get_running_loop()
    start: float | None = None
    n = 0
    while True:
        seen = buffer.pushed.count
        samples = buffer.read()
        if samples is None:
            if start is None:
                await buffer.pushed.wait_after(seen, None)
                continue
            # At least one frame period: the lead puts early deadlines in the past.
            grace = max(AUDIO_PTIME, start + (n + 1) * AUDIO_PTIME - loop.time())
            await buffer.pushed.wait_after(seen, grace)
            if buffer.pushed.count == seen:  # nothing came: the burst is over
                start = None
                yield None
            continue
        now = loop.time()
        if start is None:
            start, n = now - lead * AUDIO_PTIME, 0
        wait = start + n * AUDIO_PTIME - now
        if wait > 0:
            await asyncio.sleep(wait)
        n += 1
        yield samples
