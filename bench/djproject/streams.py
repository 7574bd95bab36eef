"""The benchmark's streams, registered through django-rtcstream's public API only."""

from __future__ import annotations

import asyncio

from bench.handlers import EchoLogic, flip_frame, slow_flip_frame
from django_rtcstream import AsyncStreamHandler, Stream, StreamHandler


class Echo(EchoLogic, StreamHandler):
    """audio / send-receive: echo; ``emit`` blocks briefly on a queue."""

    def __init__(self) -> None:
        super().__init__(input_sample_rate=48000, output_sample_rate=48000)
        self._echo_init()

    def copy(self) -> Echo:
        return Echo()

    def receive(self, frame) -> None:
        self._echo_receive(frame)

    def emit(self):
        return self._echo_emit()


class AsyncEcho(AsyncStreamHandler):
    """The same echo written as an ``AsyncStreamHandler``: both methods run on the event
    loop, so the ``ws-async`` ladder measures the session runtime without the thread
    hand-offs that a sync handler's calls cost (bench/README.md)."""

    def __init__(self) -> None:
        super().__init__(input_sample_rate=48000, output_sample_rate=48000)
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=50)

    def copy(self) -> AsyncEcho:
        return AsyncEcho()

    async def receive(self, frame) -> None:
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            pass

    async def emit(self):
        try:
            return await asyncio.wait_for(self.queue.get(), EchoLogic.EMIT_WAIT)
        except TimeoutError:
            return None


flip = Stream(flip_frame, modality="video", mode="send-receive", concurrency_limit=1000)
slowflip = Stream(slow_flip_frame, modality="video", mode="send-receive", concurrency_limit=1000)
echo = Stream(Echo(), modality="audio", mode="send-receive", concurrency_limit=1000)
echo_async = Stream(AsyncEcho(), modality="audio", mode="send-receive", concurrency_limit=1000)
# The same echo with other server-side audio buffers, to compare against the default
# (one frame of hold, adaptive): a fixed one-frame hold, and aiortc's prefetch of 4.
echo_fixed = Stream(
    Echo(),
    modality="audio",
    mode="send-receive",
    concurrency_limit=1000,
    audio_prefetch=1,
    audio_adaptive=False,
)
echo_p4 = Stream(
    Echo(),
    modality="audio",
    mode="send-receive",
    concurrency_limit=1000,
    audio_prefetch=4,
    audio_adaptive=False,
)
