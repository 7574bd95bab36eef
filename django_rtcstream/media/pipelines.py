"""The data paths between a client's media and a handler: one small class per path.

A session (``sessions.runtime``) owns the handler and its calls; a pipeline
owns a path's policy: which frame the handler sees (the latest, or every one in
order), what goes out when the handler returns nothing (the last frame again),
restarting a generator when the inputs change, pulling audio only as fast as
it is played, counting frames, converting between aiortc's frames and arrays.
The two meet through ``PipelineHost``, which is all a pipeline may ask of its
session: call handler code, take the handler's extras, fail, finish.

``choose()`` picks the pipelines a stream's modality and mode need. The output
tracks (``media.tracks``) read straight from a pipeline's ``audio_out`` buffer
or ``produce()``: the session is not in the frame path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc.mediastreams import MediaStreamTrack

from django_rtcstream.handlers import StreamHandlerBase, VideoStreamHandler
from django_rtcstream.media.arrivals import Arrivals
from django_rtcstream.media.audio_pipelines import AudioEmitter, AudioReceiver
from django_rtcstream.media.convert import AudioOutput
from django_rtcstream.media.pipeline import (
    EmitSource,
    GeneratorSource,
    Pipeline,
    PipelineHost,
    Source,
    Work,
    drain,
)
from django_rtcstream.media.tracks import EveryFrame, LatestFrame
from django_rtcstream.media.video_pipelines import (
    VideoPipeline,
    VideoSink,
    VideoSource,
    VideoTransform,
)


@dataclass
class Pipelines:
    """A session's pipelines, and the output tracks' sources."""

    parts: list[Pipeline] = field(default_factory=list)
    audio_out: AudioOutput | None = None
    video_out: VideoPipeline | None = None
    video_in: LatestFrame | None = None

    def tasks(self) -> dict[str, Work]:
        return {name: work for part in self.parts for name, work in part.tasks().items()}

    def inputs_changed(self) -> None:
        for part in self.parts:
            part.inputs_changed()

    async def close(self) -> None:
        for part in self.parts:
            await part.close()

    @property
    def frames_in(self) -> int:
        return sum(p.frames_in for p in self.parts)

    @property
    def frames_out(self) -> int:
        return sum(p.frames_out for p in self.parts)


@dataclass
class MediaIn:
    """What the client sends: its tracks by kind, and the kinds it wants back."""

    tracks: dict[str, MediaStreamTrack]
    send_kinds: set[str]


def choose(
    host: PipelineHost,
    stream: Any,
    handler: StreamHandlerBase | None,
    fn: Callable[..., Any] | None,
    media: MediaIn,
    arrivals: Arrivals,
) -> Pipelines:
    """The pipelines of a stream's modality and mode, for the media this client has.

    ``stream`` is a ``Stream`` (its ``kinds``, ``mode``, ``video_format``, ``fps``
    and ``skip_frames`` policy are read); the handler, if a class, or else ``fn``.
    """
    result = Pipelines()
    fmt, kinds, mode = stream.video_format, set(stream.kinds), stream.mode
    sends = stream.sends_media_to_client
    if "audio" in kinds and sends and "audio" in media.send_kinds:
        rate = handler.output_sample_rate if handler is not None else 48000
        result.audio_out = AudioOutput(rate)
    video = media.tracks.get("video")
    if video is not None:
        declared = stream.handler
        in_order = isinstance(declared, VideoStreamHandler) and not declared.skip_frames
        result.video_in = EveryFrame(video, stream.fps) if in_order else LatestFrame(video)
    generator = GeneratorSource(host, fn) if fn is not None and mode == "receive" else None
    audio = media.tracks.get("audio")
    if audio is not None:
        if handler is not None:
            result.parts.append(AudioReceiver(host, audio, handler, arrivals))
        else:  # a function has no receive(): the audio is drained
            result.parts.append(_Drain(host, audio, "audio-in"))
    if "audio" in kinds and (handler is not None or mode == "receive"):
        source: Source
        if generator is not None:
            source = generator
        else:
            assert handler is not None
            source = EmitSource(host, handler.emit, own_thread=True)  # type: ignore[attr-defined]
        result.parts.append(AudioEmitter(host, source, result.audio_out, arrivals))
    if "video" in kinds:
        video_part: VideoPipeline | None = None
        if mode == "receive" and sends and "video" in media.send_kinds:
            if generator is not None:
                video_source: Source = generator
            else:
                assert handler is not None
                video_source = EmitSource(host, handler.video_emit, own_thread=False)  # type: ignore[attr-defined]
            video_part = VideoSource(host, video_source, fmt, stream.fps)
        elif mode == "send-receive" and "video" in media.send_kinds:
            video_part = VideoTransform(host, result.video_in, fmt, fn, handler)
        elif mode == "send" and result.video_in is not None:
            video_part = VideoSink(host, result.video_in, fmt, fn, handler)
        if video_part is not None:
            result.parts.append(video_part)
            if sends:
                result.video_out = video_part
        elif result.video_in is not None:
            # Video the stream does not use is still drained: aiortc's queues are unbounded.
            result.parts.append(_Drain(host, result.video_in, "video-in"))
    return result


class _Drain(Pipeline):
    """Media nobody reads is still received: aiortc's remote queues are unbounded."""

    def __init__(
        self, host: PipelineHost, source: LatestFrame | MediaStreamTrack, name: str
    ) -> None:
        super().__init__(host)
        self.source, self.name = source, name

    def tasks(self) -> dict[str, Work]:
        source = self.source
        return {self.name: source.run() if isinstance(source, LatestFrame) else drain(source)}
