"""The media pipelines against a stand-in session: no peer connection, no server.

Each pipeline is driven through ``PipelineHost`` by ``Host`` below, which runs
handler code inline and records what the pipeline reported. These run in
milliseconds; the same paths are shown end to end over aiortc in test_media.py.
"""

from __future__ import annotations

import asyncio
import contextvars
import fractions
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

from django_rtcstream import (
    AdditionalOutputs,
    AudioVideoStreamHandler,
    Stream,
    StreamHandler,
    VideoStreamHandler,
)
from django_rtcstream.media import pipelines
from django_rtcstream.media.arrivals import Arrivals
from django_rtcstream.media.audio_pipelines import AudioEmitter, AudioReceiver
from django_rtcstream.media.feed import SerialFeed
from django_rtcstream.media.pipeline import EmitSource, GeneratorSource
from django_rtcstream.media.socket_audio import SocketAudioIn
from django_rtcstream.media.tracks import EveryFrame, LatestFrame, PushedAudioTrack
from django_rtcstream.media.video_pipelines import VideoSink, VideoSource, VideoTransform

pytestmark = pytest.mark.timeout(10)


class Host:
    """A session as far as a pipeline can tell: calls run inline, reports are kept."""

    def __init__(self, inputs: list[Any] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.inputs = inputs or []
        self.ready = asyncio.Event()
        self.ready.set()
        self.extras: list[Any] = []
        self.extra_arrived = asyncio.Event()
        self.failures: list[BaseException] = []
        self.finished = asyncio.Event()
        self.own_thread_calls = 0
        self.pool = ThreadPoolExecutor(1)

    async def call(self, fn: Callable[..., Any], *args: Any, own_thread: bool = False) -> Any:
        self.own_thread_calls += own_thread
        result = fn(*args)
        return await result if asyncio.iscoroutine(result) else result

    def serial_feed(
        self, fn: Callable[[Any], None], after: Callable[[], None], *, calls: Any
    ) -> SerialFeed:
        return SerialFeed(self.loop, self.pool, fn, contextvars.copy_context(), self.fail, after)

    def timed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return fn

    async def handle_extra(self, extra: Any) -> None:
        self.extras.append(extra)
        self.extra_arrived.set()

    def fail(self, exc: BaseException) -> None:
        self.failures.append(exc)

    def finish(self) -> None:
        self.finished.set()


class Frames(MediaStreamTrack):
    """A remote track that plays the given frames, then ends."""

    def __init__(self, kind: str, frames: list[Any]) -> None:
        super().__init__()
        self.kind = kind
        self._frames = list(frames)

    async def recv(self) -> Any:
        if not self._frames:
            raise MediaStreamError
        await asyncio.sleep(0)
        return self._frames.pop(0)


def video(value: int) -> VideoFrame:
    frame = VideoFrame.from_ndarray(np.full((16, 16, 3), value, np.uint8), format="rgb24")
    frame.pts, frame.time_base = value, fractions.Fraction(1, 90000)
    return frame


def audio(n: int = 960, rate: int = 48000) -> AudioFrame:
    frame = AudioFrame.from_ndarray(np.full((1, n), 1000, np.int16), format="s16", layout="mono")
    frame.sample_rate, frame.pts = rate, 0
    frame.time_base = fractions.Fraction(1, rate)
    return frame


def value_of(frame: VideoFrame) -> int:
    return int(frame.to_ndarray(format="rgb24")[0, 0, 0])


async def test_a_video_transform_returns_the_function_result_and_repeats_the_last_frame_when_it_returns_none():
    host = Host(inputs=[5])
    seen: list[tuple[int, int]] = []

    def fn(array: np.ndarray, offset: int) -> np.ndarray | None:
        seen.append((int(array[0, 0, 0]), offset))
        return None if array[0, 0, 0] == 20 else array + offset

    frames = EveryFrame(Frames("video", [video(10), video(20)]), 30)
    transform = VideoTransform(host, frames, "rgb24", fn=fn)
    reader = asyncio.ensure_future(frames.run())
    outs = [await transform.produce(), await transform.produce()]
    await reader
    assert [value_of(f) for f in outs] == [15, 15]
    assert seen == [(10, 5), (20, 5)]
    assert (transform.frames_in, transform.frames_out, host.failures) == (2, 2, [])


async def test_a_video_transform_reports_a_handler_error_to_the_session_and_ends_its_track():
    host = Host()

    def fn(array: np.ndarray) -> np.ndarray:
        raise ValueError("bad frame")

    frames = LatestFrame(Frames("video", [video(1)]))
    transform = VideoTransform(host, frames, "rgb24", fn=fn)
    feeding = asyncio.ensure_future(frames.run())
    with pytest.raises(MediaStreamError):
        await transform.produce()
    feeding.cancel()
    assert [type(e) for e in host.failures] == [ValueError]


async def test_a_video_transform_without_client_video_ends_its_track_at_once():
    transform = VideoTransform(Host(), None, "rgb24", fn=lambda a: a)
    with pytest.raises(MediaStreamError):
        await transform.produce()


async def test_a_class_handler_transform_calls_video_receive_then_video_emit_and_passes_extras_on():
    host = Host()
    calls: list[str] = []

    class Handler(AudioVideoStreamHandler):
        def receive(self, frame: Any) -> None: ...
        def emit(self) -> None: ...

        def video_receive(self, frame: np.ndarray) -> AdditionalOutputs:
            calls.append("receive")
            self.last = frame
            return AdditionalOutputs("seen")

        def video_emit(self) -> np.ndarray:
            calls.append("emit")
            return 255 - self.last

        def copy(self) -> Handler:
            return Handler()

    frames = LatestFrame(Frames("video", [video(40)]))
    transform = VideoTransform(host, frames, "rgb24", handler=Handler())
    feeding = asyncio.ensure_future(frames.run())
    out = await transform.produce()
    feeding.cancel()
    assert (value_of(out), calls, host.extras) == (
        215,
        ["receive", "emit"],
        [AdditionalOutputs("seen")],
    )


async def test_a_video_sink_hands_every_frame_to_the_function_with_the_inputs_and_keeps_only_extras():
    host = Host(inputs=["x"])
    got: list[tuple[int, str]] = []

    def fn(array: np.ndarray, label: str) -> AdditionalOutputs:
        got.append((int(array[0, 0, 0]), label))
        return AdditionalOutputs(len(got))

    frames = EveryFrame(Frames("video", [video(1), video(2), video(3)]), 30)
    sink = VideoSink(host, frames, "rgb24", fn=fn)
    await asyncio.gather(*sink.tasks().values())
    assert got == [(1, "x"), (2, "x"), (3, "x")]
    assert host.extras == [AdditionalOutputs(1), AdditionalOutputs(2), AdditionalOutputs(3)]
    assert sink.frames_in == 3


async def test_a_generator_source_restarts_with_the_new_inputs_and_finishes_when_it_returns():
    host = Host(inputs=[10])

    def gen(n: int) -> Any:
        for _ in range(2):
            yield np.full((4, 4, 3), n, np.uint8)

    source = VideoSource(host, GeneratorSource(host, gen), "rgb24", fps=1000)
    first = await source.produce()
    host.inputs = [200]
    source.inputs_changed()
    second, third = await source.produce(), await source.produce()
    # (generated frames are yuv420p: a value comes back within a step or two)
    values = [value_of(f) for f in (first, second, third)]
    assert np.allclose(values, [10, 200, 200], atol=3), values
    with pytest.raises(MediaStreamError):
        await source.produce()
    assert host.finished.is_set()


async def test_an_audio_emitter_plays_what_emit_returns_and_runs_a_sync_emit_on_the_own_thread():
    host = Host()
    items: list[Any] = [(24000, np.ones(480, np.int16)), None, AdditionalOutputs("done")]

    class Handler(StreamHandler):
        def receive(self, frame: Any) -> None: ...

        def emit(self) -> Any:
            return items.pop(0) if items else None

        def copy(self) -> Handler:
            return Handler()

    from django_rtcstream.media.convert import AudioOutput

    out = AudioOutput(24000)
    emitter = AudioEmitter(host, EmitSource(host, Handler().emit, own_thread=True), out, Arrivals())
    task = asyncio.ensure_future(emitter.run())
    await asyncio.wait_for(host.extra_arrived.wait(), 10)
    task.cancel()
    assert out.read() is not None and emitter.frames_out == 1
    assert host.extras == [AdditionalOutputs("done")] and host.own_thread_calls >= 3


async def test_an_audio_emitter_finishes_the_session_once_a_generator_has_played_out():
    host = Host()

    def gen() -> Any:
        yield 48000, np.ones(960, np.int16)

    from django_rtcstream.media.convert import AudioOutput

    out = AudioOutput(48000)
    emitter = AudioEmitter(host, GeneratorSource(host, gen), out, Arrivals())
    task = asyncio.ensure_future(emitter.run())
    await asyncio.sleep(0.01)
    assert not host.finished.is_set()  # one frame is still queued
    while out.read() is not None:
        pass
    await asyncio.wait_for(host.finished.wait(), 2)
    await task


async def test_an_audio_receiver_converts_to_the_handler_rate_and_layout_for_an_async_receive():
    host = Host()
    got: list[tuple[int, tuple[int, ...]]] = []

    class Handler(StreamHandler):
        def __init__(self) -> None:
            super().__init__(input_sample_rate=16000)

        async def receive(self, frame: tuple[int, np.ndarray]) -> None:  # type: ignore[override]
            got.append((frame[0], frame[1].shape))

        def emit(self) -> None: ...

        def copy(self) -> Handler:
            return Handler()

    arrivals = Arrivals()
    receiver = AudioReceiver(
        host, Frames("audio", [audio() for _ in range(5)]), Handler(), arrivals
    )
    await receiver.run()
    assert receiver.frames_in == 5 and arrivals.count == 5
    assert {rate for rate, _ in got} == {16000} and all(shape[0] == 1 for _, shape in got)


class Recorder(StreamHandler):
    """A sync receive that keeps what it gets; ``gate`` holds it (a slow handler)."""

    def __init__(self, rate: int = 48000, layout: str = "mono") -> None:
        super().__init__(input_sample_rate=rate, expected_layout=layout)  # type: ignore[arg-type]
        self.got: list[tuple[int, np.ndarray]] = []
        self.gate: Any = None
        self.entered = threading.Event()

    def receive(self, frame: tuple[int, np.ndarray]) -> None:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(5)
        self.got.append(frame)

    def emit(self) -> None: ...

    def copy(self) -> Recorder:
        return Recorder()


def _pieces(count: int, n: int = 960) -> list[np.ndarray]:
    return [np.arange(i * n, (i + 1) * n, dtype=np.int32).astype(np.int16) for i in range(count)]


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):  # 5 s at most
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in 5 s")


async def test_socket_audio_at_the_handlers_rate_reaches_a_sync_receive_as_decoded_in_order():
    # Pushed before the receiver starts (queued on the track as frames) and after (handed
    # over as samples): all arrive in order, sample for sample, as (rate, (1, n) int16).
    host = Host()
    handler = Recorder()
    track = PushedAudioTrack()
    socket_in = SocketAudioIn(track, 48000)
    pieces = _pieces(6)
    for piece in pieces[:2]:
        socket_in.push(piece)
    arrivals = Arrivals()
    receiver = AudioReceiver(host, track, handler, arrivals)
    task = asyncio.ensure_future(receiver.run())
    await _until(lambda: track.sink is not None)
    for piece in pieces[2:]:
        socket_in.push(piece)
    await _until(lambda: arrivals.count == 6)
    assert receiver.frames_in == 6 and track.dropped == 0
    assert [rate for rate, _ in handler.got] == [48000] * 6
    assert all(a.shape == (1, 960) and a.dtype == np.int16 for _, a in handler.got)
    assert np.array_equal(np.concatenate([a[0] for _, a in handler.got]), np.concatenate(pieces))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert track.sink is None  # a session that ended takes nothing more


async def test_socket_audio_a_slow_sync_receive_falls_behind_on_loses_the_oldest_and_counts_them():
    host = Host()
    handler = Recorder()
    handler.gate = threading.Event()
    track = PushedAudioTrack(maxsize=5)
    socket_in = SocketAudioIn(track, 48000)
    receiver = AudioReceiver(host, track, handler, Arrivals())
    task = asyncio.ensure_future(receiver.run())
    await _until(lambda: track.sink is not None)
    pieces = _pieces(100, n=16)
    socket_in.push(pieces[0])
    await asyncio.get_running_loop().run_in_executor(None, handler.entered.wait, 5)
    for piece in pieces[1:]:  # while the first is in receive()
        socket_in.push(piece)
    kept = 50 + 5  # FEED_BACKLOG + the track's own bound, as the track and feed held before
    handler.gate.set()
    await _until(lambda: len(handler.got) + track.dropped == 100)
    # The first piece was being handled when the rest came; of those, the newest are kept.
    assert track.dropped == 100 - 1 - kept
    assert np.array_equal(handler.got[0][1][0], pieces[0])
    assert np.array_equal(
        np.concatenate([a[0] for _, a in handler.got[1:]]), np.concatenate(pieces[-kept:])
    )
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize(("rate", "layout"), [(16000, "mono"), (48000, "stereo")])
async def test_socket_audio_that_needs_converting_still_goes_through_frames(rate, layout):
    host = Host()
    handler = Recorder(rate, layout)
    track = PushedAudioTrack()
    socket_in = SocketAudioIn(track, 48000)
    arrivals = Arrivals()
    receiver = AudioReceiver(host, track, handler, arrivals)
    task = asyncio.ensure_future(receiver.run())
    for piece in _pieces(4):
        socket_in.push(piece)
    await _until(lambda: arrivals.count == 4)
    assert track.sink is None
    assert {r for r, _ in handler.got} == {rate}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def _stream(handler: Any, modality: str, mode: str) -> Stream:
    return Stream(handler, modality=modality, mode=mode)


class Echo(StreamHandler):
    def receive(self, frame: Any) -> None: ...
    def emit(self) -> None: ...
    def copy(self) -> Echo:
        return Echo()


class AV(AudioVideoStreamHandler):
    def receive(self, frame: Any) -> None: ...
    def emit(self) -> None: ...
    def video_receive(self, frame: Any) -> None: ...
    def video_emit(self) -> None: ...
    def copy(self) -> AV:
        return AV()


def _gen() -> Any:
    yield None


CASES = [
    ("video", "send-receive", lambda a: a, {"video"}, ["VideoTransform"]),
    ("video", "send", lambda a: None, {"video"}, ["VideoSink"]),
    ("video", "receive", _gen, set(), ["VideoSource"]),
    ("audio", "send-receive", Echo(), {"audio"}, ["AudioReceiver", "AudioEmitter"]),
    ("audio", "send", Echo(), {"audio"}, ["AudioReceiver", "AudioEmitter"]),
    ("audio", "receive", _gen, set(), ["AudioEmitter"]),
    (
        "audio-video",
        "send-receive",
        AV(),
        {"audio", "video"},
        ["AudioReceiver", "AudioEmitter", "VideoTransform"],
    ),
    (
        "audio-video",
        "send",
        AV(),
        {"audio", "video"},
        ["AudioReceiver", "AudioEmitter", "VideoSink"],
    ),
    ("audio-video", "receive", AV(), set(), ["AudioEmitter", "VideoSource"]),
]


@pytest.mark.parametrize(("modality", "mode", "handler", "client_sends", "expected"), CASES)
async def test_choose_picks_one_pipeline_per_data_path_of_the_modality_and_mode(
    modality: str, mode: str, handler: Any, client_sends: set[str], expected: list[str]
):
    stream = _stream(handler, modality, mode)
    own = handler.copy() if isinstance(handler, StreamHandler) else None
    fn = None if own is not None else handler
    tracks = {kind: Frames(kind, []) for kind in client_sends}
    media = pipelines.MediaIn(tracks=tracks, send_kinds=set(stream.kinds))
    chosen = pipelines.choose(Host(), stream, own, fn, media, Arrivals())
    assert [type(p).__name__ for p in chosen.parts] == expected
    assert (chosen.audio_out is not None) == ("audio" in stream.kinds and mode != "send")
    assert (chosen.video_out is not None) == ("video" in stream.kinds and mode != "send")


async def test_choose_keeps_every_frame_in_order_only_for_a_video_handler_that_asks_for_it():
    media = pipelines.MediaIn(tracks={"video": Frames("video", [])}, send_kinds={"video"})
    for skip, kind in ((True, LatestFrame), (False, EveryFrame)):
        stream = _stream(VideoStreamHandler(lambda a: a, skip_frames=skip), "video", "send-receive")
        chosen = pipelines.choose(Host(), stream, None, lambda a: a, media, Arrivals())
        assert type(chosen.video_in) is kind
