"""The video paths: transform (send-receive), sink (send) and source (receive)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiortc.mediastreams import MediaStreamError
from av import VideoFrame

from django_rtcstream.handlers import StreamHandlerBase
from django_rtcstream.media.convert import array_to_video, split_result, video_to_array
from django_rtcstream.media.pipeline import Ended, Pipeline, PipelineHost, Source, Work
from django_rtcstream.media.tracks import LatestFrame, VideoClock


class VideoPipeline(Pipeline):
    """Common to the video paths: the format handlers see, the last frame sent."""

    def __init__(self, host: PipelineHost, fmt: str) -> None:
        super().__init__(host)
        self.fmt = fmt
        self.last_out: VideoFrame | None = None

    async def produce(self) -> VideoFrame:
        """The next outgoing frame; aiortc's sender swallows errors, so report them here."""
        try:
            await self.host.ready.wait()
            return await self.next_frame()
        except (MediaStreamError, asyncio.CancelledError):
            raise
        except Exception as exc:
            self.host.fail(exc)
            raise MediaStreamError from exc

    async def next_frame(self) -> VideoFrame:
        raise MediaStreamError

    async def extras(self, result: Any) -> Any:
        """Hand a result's extra to the session; its media."""
        media, extra = split_result(result)
        if extra is not None:
            await self.host.handle_extra(extra)
        return media


class VideoTransform(VideoPipeline):
    """Send-receive: each frame the handler sees makes one frame back.

    A function takes one pool hop per frame (convert, call, convert back); a
    handler's ``video_receive`` then ``video_emit``. A handler that returns
    nothing sends the last frame again (or the input, before any).
    """

    def __init__(
        self,
        host: PipelineHost,
        frames: LatestFrame | None,
        fmt: str,
        fn: Callable[..., Any] | None = None,
        handler: StreamHandlerBase | None = None,
    ) -> None:
        super().__init__(host, fmt)
        self.frames, self.fn, self.handler = frames, fn, handler

    def tasks(self) -> dict[str, Work]:
        return {"video-in": self.frames.run()} if self.frames is not None else {}

    async def next_frame(self) -> VideoFrame:
        if self.frames is None:  # the offer sent no video to transform
            raise MediaStreamError
        frame: VideoFrame = await self.frames.next()  # type: ignore[assignment]  # video track
        self.frames_in += 1
        call = self.host.call
        out: VideoFrame | None
        if self.fn is not None:
            out, extra = await call(_transform_video, self.fn, frame, self.fmt, self.host.inputs)
            if extra is not None:
                await self.host.handle_extra(extra)
        else:
            assert self.handler is not None
            array = await call(video_to_array, frame, self.fmt)
            await self.extras(await call(self.handler.video_receive, array))  # type: ignore[attr-defined]
            media = await self.extras(await call(self.handler.video_emit))  # type: ignore[attr-defined]
            out = None if media is None else await call(array_to_video, media, self.fmt, frame)
        self.frames_out += 1
        if out is None:
            return self.last_out or frame
        self.last_out = out
        return out


class VideoSink(VideoPipeline):
    """Send mode: the handler sees the frames; only its extras go anywhere."""

    def __init__(
        self,
        host: PipelineHost,
        frames: LatestFrame,
        fmt: str,
        fn: Callable[..., Any] | None = None,
        handler: StreamHandlerBase | None = None,
    ) -> None:
        super().__init__(host, fmt)
        self.frames, self.fn, self.handler = frames, fn, handler

    def tasks(self) -> dict[str, Work]:
        return {"video-in": self.frames.run(), "video-handler": self.run()}

    async def run(self) -> None:
        call = self.host.call
        while True:
            try:
                frame = await self.frames.next()
            except MediaStreamError:
                return
            self.frames_in += 1
            if self.fn is not None:
                result = await call(_apply_video_fn, self.fn, frame, self.fmt, self.host.inputs)
            else:
                assert self.handler is not None
                array = await call(video_to_array, frame, self.fmt)
                result = await call(self.handler.video_receive, array)  # type: ignore[attr-defined]
            await self.extras(result)


class VideoSource(VideoPipeline):
    """Receive mode: generated frames at the stream's rate; a gap repeats the last one."""

    def __init__(self, host: PipelineHost, source: Source, fmt: str, fps: int) -> None:
        super().__init__(host, fmt)
        self.source = source
        self.clock = VideoClock(fps)

    def inputs_changed(self) -> None:
        self.source.restart()

    async def close(self) -> None:
        await self.source.close()

    async def next_frame(self) -> VideoFrame:
        while True:
            try:
                item = await self.source.next()
            except Ended:
                self.host.finish()
                raise MediaStreamError from None
            media = await self.extras(item)
            if media is None:
                if self.last_out is None:
                    await asyncio.sleep(0.01)
                    continue
                frame = self.last_out
            else:
                frame = await self.host.call(array_to_video, media, self.fmt, None)
                self.last_out = frame
            self.frames_out += 1
            return await self.clock.tick(frame)


def _apply_video_fn(fn: Callable[..., Any], frame: Any, fmt: str, inputs: list[Any]) -> Any:
    """Convert, call the user's function with the inputs after the frame."""
    return fn(video_to_array(frame, fmt), *inputs)


def _transform_video(
    fn: Callable[..., Any], frame: Any, fmt: str, inputs: list[Any]
) -> tuple[Any, Any]:
    """The whole send-receive step, ``(output frame or None, extra)``."""
    media, extra = split_result(_apply_video_fn(fn, frame, fmt, inputs))
    return (array_to_video(media, fmt, frame) if media is not None else None), extra
