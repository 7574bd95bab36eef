"""The audio paths: client audio into ``receive``, the handler's audio out at play rate."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from django_rtcstream.handlers import StreamHandlerBase
from django_rtcstream.media.arrivals import Arrivals
from django_rtcstream.media.convert import AudioInput, AudioOutput, split_result
from django_rtcstream.media.feed import SerialFeed
from django_rtcstream.media.pipeline import Ended, Pipeline, PipelineHost, Source, Work
from django_rtcstream.media.tracks import PushedAudioTrack

AUDIO_BUFFER_AHEAD = 0.06  # seconds of output audio the emitter keeps queued
FEED_BACKLOG = 50  # audio frames (1 s) queued for a sync receive() before input waits


class AudioReceiver(Pipeline):
    """Client audio -> ``handler.receive``, converted to the handler's rate and layout.

    Async handlers are called on the loop. Sync ones run in the pool, frames in
    order, the conversion (a resampling, from aiortc's stereo) with them, off the
    loop that also answers offers; if they fall a second behind, input waits.
    """

    def __init__(
        self,
        host: PipelineHost,
        track: MediaStreamTrack,
        handler: StreamHandlerBase,
        arrivals: Arrivals,
    ) -> None:
        super().__init__(host)
        self.track, self.arrivals = track, arrivals
        self.converter = AudioInput(handler.input_sample_rate, handler.expected_layout)
        # Called directly, not through host.call: timed here (handler call metrics).
        self.receive: Callable[..., Any] = host.timed(handler.receive)  # type: ignore[attr-defined]

    def tasks(self) -> dict[str, Work]:
        return {"audio-in": self.run()}

    async def run(self) -> None:
        if inspect.iscoroutinefunction(self.receive):
            await self._run_async()
            return
        feed = self.host.serial_feed(
            functools.partial(_convert_and_receive, self.host.loop, self.converter, self.receive),
            self.arrivals.tick_threadsafe,
            calls=self.receive,
        )
        self._take_samples(feed)
        try:
            while True:
                try:
                    frame = await self.track.recv()
                except MediaStreamError:
                    return  # what is queued is still handled
                self.frames_in += 1
                feed.put(frame)
                if feed.backlog > FEED_BACKLOG:  # receive() is slower than real time
                    await feed.wait_backlog(FEED_BACKLOG // 2)
        except asyncio.CancelledError:
            if isinstance(self.track, PushedAudioTrack):
                self.track.sink = None
            feed.stop()
            raise

    def _take_samples(self, feed: SerialFeed) -> None:
        """Socket audio already at the handler's rate, in mono, goes into the feed as the
        consumer decoded it (``PushedAudioTrack.sink``): no frame is built for it, none is
        queued on the track, and this task is not woken for it. That was about a tenth of
        the event loop's time per message of an audio WebSocket session (bench/README.md,
        "The audio WebSocket path"). A handler that falls behind loses the oldest
        samples, as the track's own queue would drop them."""
        track = self.track
        converter = self.converter
        if not (
            isinstance(track, PushedAudioTrack)
            and track.sample_rate == converter.sample_rate
            and converter.layout == "mono"
        ):
            return
        for frame in track.take_queued():  # pushed before this pipeline started
            self.frames_in += 1
            feed.put(frame)
        rate = converter.sample_rate
        limit = FEED_BACKLOG + track.maxsize

        def sink(samples: np.ndarray) -> None:
            self.frames_in += 1
            track.dropped += feed.put((rate, samples.reshape(1, -1)), keep=limit)

        track.sink = sink

    async def _run_async(self) -> None:
        while True:
            try:
                frame = await self.track.recv()
            except MediaStreamError:
                return
            self.frames_in += 1
            for chunk in self.converter.convert(frame):  # type: ignore[arg-type]  # an AudioFrame
                await self.receive(chunk)
            self.arrivals.tick()


class AudioEmitter(Pipeline):
    """The handler's audio -> ``audio_out``, pulled only as fast as it is played.

    With no ``audio_out`` (send mode) the handler is still pulled, for its extras.
    When the source ends, the session finishes once what is queued has played.
    """

    def __init__(
        self, host: PipelineHost, source: Source, out: AudioOutput | None, arrivals: Arrivals
    ) -> None:
        super().__init__(host)
        self.source, self.out, self.arrivals = source, out, arrivals

    def tasks(self) -> dict[str, Work]:
        return {"audio-out": self.run()}

    def inputs_changed(self) -> None:
        self.source.restart()

    async def close(self) -> None:
        await self.source.close()

    async def run(self) -> None:
        out = self.out
        while True:
            if out is not None:
                while out.buffered_seconds >= AUDIO_BUFFER_AHEAD:
                    out.space.clear()
                    await out.space.wait()
            seen = self.arrivals.count
            try:
                item = await self.source.next()
            except Ended:
                await self._finish_after_playout()
                return
            if item is None:
                # "Nothing yet": wait for new input or a frame's time, never spin.
                await self.arrivals.wait_after(seen, 0.02)
                continue
            media, extra = split_result(item)
            if media is not None and out is not None:
                if not (isinstance(media, tuple) and len(media) in (2, 3)):
                    raise TypeError(
                        f"audio handlers must emit (sample_rate, array), got {type(media).__name__}"
                    )
                out.push(*media)
                self.frames_out += 1
            if extra is not None:
                await self.host.handle_extra(extra)

    async def _finish_after_playout(self) -> None:
        if self.out is not None:
            while self.out.buffered_seconds > 0:
                self.out.space.clear()
                await self.out.space.wait()
            await asyncio.sleep(0.1)
        self.host.finish()


def _convert_and_receive(
    loop: asyncio.AbstractEventLoop, converter: AudioInput, receive: Callable[..., Any], frame: Any
) -> None:
    # A (rate, samples) pair came from a socket sink already as the handler wants it.
    chunks = [frame] if isinstance(frame, tuple) else converter.convert(frame)
    for chunk in chunks:
        result = receive(chunk)
        if inspect.isawaitable(result):  # a sync callable that returned a coroutine
            # run_coroutine_threadsafe refuses any other awaitable itself (TypeError).
            asyncio.run_coroutine_threadsafe(result, loop).result()  # type: ignore[arg-type]
