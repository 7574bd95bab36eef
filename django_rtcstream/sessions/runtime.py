"""The per-process session runtime.

A ``Session`` owns one peer connection, one handler copy (or the stream's
function) and the tasks that move media between them. It is created by the
``SessionManager`` of the worker that answered the offer and lives only
there; everything that must reach it from elsewhere (inputs, candidates,
close) arrives on its control channel (see ``bus``), and everything it
reports (state, outputs) goes to its database record and the output group.

Sync handler code runs in a bounded thread pool; async handler code on the
loop. Media conversions run in the pool together with the handler call.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from django_rtcstream import background, safejson, signals
from django_rtcstream.conf import rtc_settings
from django_rtcstream.exceptions import DatabaseUnavailable, SignalingError
from django_rtcstream.handlers import (
    AdditionalOutputs,
    CloseStream,
    Context,
    SessionPort,
    StreamHandlerBase,
    VideoStreamHandler,
    WebRTCError,
    _current_context,
    _current_port,
    is_async_handler,
)
from django_rtcstream.media import ice, jitter
from django_rtcstream.media.ice import parse_candidate
from django_rtcstream.media.arrivals import Arrivals
from django_rtcstream.media.sdp import read_offer
from django_rtcstream.media.convert import (
    AudioInput,
    AudioOutput,
    array_to_video,
    split_result,
    video_to_array,
)
from django_rtcstream.media.tracks import (
    EveryFrame,
    LatestFrame,
    PacedAudioTrack,
    ProducedVideoTrack,
    PushedAudioTrack,
    VideoClock,
)
from django_rtcstream.models import SessionState
from django_rtcstream.sessions import bus, memory, records
from django_rtcstream.sessions.feed import SerialFeed
from django_rtcstream.sessions.pool import ENDED_GRACE, HandlerPool, OwnThread
from django_rtcstream.sessions.stats import StatsSampler
from django_rtcstream.stream import Stream

logger = logging.getLogger(__name__)

AUDIO_BUFFER_AHEAD = 0.06  # seconds of output audio the emit pump keeps queued
PENDING_MESSAGES = 64
PENDING_FLUSH_WAIT = 2.0  # seconds a session that failed early waits to tell its client why
FEED_BACKLOG = 50  # audio frames (1 s) queued for a sync receive() before input waits
OUTPUT_BUFFER = 32  # outputs a session keeps while the channel layer is away (the newest)
OUTPUT_FLUSH_WAIT = 1.0  # seconds a closing session gives its kept outputs to go out


class _Ended(Exception):
    """Internal: the media source of a pipeline is gone."""


class Session(SessionPort):
    """One live streaming session on this worker."""

    def __init__(
        self, manager: SessionManager, stream: Stream, webrtc_id: str, record_id: Any
    ) -> None:
        self.manager = manager
        self.stream = stream
        self.webrtc_id = webrtc_id
        self.record_id = record_id
        self.loop = asyncio.get_running_loop()
        self.started_wall = time.time()
        self.started = time.monotonic()
        self.inputs: list[Any] = stream.inputs.defaults()
        handler = stream.handler
        self.handler: StreamHandlerBase | None = None
        self.fn: Callable[..., Any] | None = None
        if isinstance(handler, StreamHandlerBase):
            self.handler = handler.copy()
            self.handler._attach(self)
            # The defaults, without args_set: that waits for the client's own values.
            self.handler.latest_args = ["__webrtc_value__", *self.inputs]
        else:
            self.fn = handler.callable if isinstance(handler, VideoStreamHandler) else handler
        self.is_async = self.handler is not None and is_async_handler(self.handler)
        self.context = contextvars.copy_context()
        self.context.run(_current_context.set, Context(webrtc_id, stream.name or ""))
        self.context.run(_current_port.set, self)
        self.pc: RTCPeerConnection | None = None
        self.data_channel: Any = None
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self.clear_listeners: list[Callable[[], None]] = []
        self.audio_input: PushedAudioTrack | None = None
        self.jitter_buffer: jitter.AudioJitterBuffer | None = None
        self.video_jitter_buffer: jitter.MarkerVideoJitterBuffer | None = None
        self._pending: deque[str] = deque(maxlen=PENDING_MESSAGES)
        self._channel_opened = asyncio.Event()
        self._early_candidates: list[dict[str, Any] | None] = []
        self._remote_set = False
        self._remote_tracks: dict[str, MediaStreamTrack] = {}
        self._out_tracks: list[MediaStreamTrack] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._close_task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.ready = asyncio.Event()  # start_up() done
        self.audio_out: AudioOutput | None = None
        self.arrivals = Arrivals()  # input frames handled, for the emit pump
        self._generator: Any = None
        self._generator_stale = False
        self._generator_done = False
        self.token = ""
        self.token_hash = ""
        self.channel = "webrtc"  # or "websocket", "phone": as in the record
        self.user_id: Any = None
        self.admitted = False  # the record exists (admission passed)
        self.admission: asyncio.Future[Any] | None = None  # an offer's, while it runs
        self.started_up = False  # start_up() was called: shutdown() is owed
        self.frames_in = 0
        self.frames_out = 0
        self.messages_out = 0
        self.connected_at: Any = None  # when the client connected (wall clock, aware)
        # Record fields a write could not store (the database was away): the heartbeat
        # stores them with the next beat that reaches it (see record_fields).
        self.unsaved: set[str] = set()
        self._emit_thread: OwnThread | None = None
        self._latest_video: LatestFrame | EveryFrame | None = None
        self._last_video_out: Any = None
        # Outputs on their way to the output group (see _publish_outputs).
        self._outbox: deque[AdditionalOutputs] = deque()
        self._outbox_wake = asyncio.Event()
        self._outbox_closing = asyncio.Event()
        self._outputs_dropped = 0
        self._publisher: asyncio.Task[None] | None = None
        self.stats = StatsSampler(self)  # network and media figures (sessions/stats.py)

    def __repr__(self) -> str:
        return f"<Session {self.stream.name}/{self.webrtc_id}>"

    # -- tasks and calls ------------------------------------------------------------

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = self.loop.create_task(
            coro, name=f"rtcstream:{self.webrtc_id}:{name}", context=self.context.copy()
        )
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not isinstance(exc, (_Ended, MediaStreamError)):
            self.fail(exc)

    async def call(
        self, fn: Callable[..., Any], *args: Any, executor: HandlerPool | OwnThread | None = None
    ) -> Any:
        """Run handler code: coroutines on the loop, sync code in the pool
        (or on ``executor``: the session's own thread for a blocking ``emit``)."""
        if inspect.iscoroutinefunction(fn):
            return await fn(*args)
        pool = executor or self.manager.executor
        result = await asyncio.wrap_future(
            pool.submit_as(self.call_label(fn), self, self.context.copy().run, fn, *args),
            loop=self.loop,
        )
        if inspect.isawaitable(result):
            return await result
        return result

    def call_label(self, fn: Any) -> str:
        """How a stuck call is named in the log: stream, session and function."""
        name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
        return f"{name}() of stream {self.stream.name!r} (session {self.webrtc_id})"

    def fail(self, exc: BaseException) -> None:
        """A handler raised: tell the client, log it with the session id, close."""
        if self.closed.is_set() or self._close_task is not None:
            return
        if isinstance(exc, WebRTCError):  # meant for the user: their words, no traceback
            logger.warning(
                "Session %s/%s ended by WebRTCError: %s",
                self.stream.name,
                self.webrtc_id,
                exc.message,
            )
            self.send_message({"type": "error", "data": exc.message, "message": exc.message})
        else:
            logger.error(
                "Handler error in session %s/%s", self.stream.name, self.webrtc_id, exc_info=exc
            )
            self.send_message({"type": "error", "data": f"{type(exc).__name__}: {exc}"})
        self.request_close(f"handler_error: {type(exc).__name__}", SessionState.FAILED)

    @property
    def ended(self) -> bool:
        """Closing or closed: handler waits (``wait_for_args``) give up."""
        return self.closed.is_set() or self._close_task is not None

    # -- messages to the client -------------------------------------------------------

    def send_message(self, message: dict[str, Any]) -> None:
        """Thread-safe: queue a ``{"type", "data"}`` message for the client."""
        if threading.get_ident() != self.manager.loop_thread:
            self.loop.call_soon_threadsafe(self._send_now, message)
        else:
            self._send_now(message)

    def _send_now(self, message: dict[str, Any]) -> None:
        if self.closed.is_set():
            return
        message.setdefault("data", None)
        self.messages_out += 1
        text = json.dumps(message, default=str)
        channel = self.data_channel
        if channel is not None and channel.readyState == "open":
            channel.send(text)
        else:
            self._pending.append(text)
        for listener in list(self.listeners):
            listener(message)

    def clear_output(self) -> None:
        """Drop queued output audio (barge-in); socket transports also tell the far end."""
        if threading.get_ident() != self.manager.loop_thread:
            self.loop.call_soon_threadsafe(self._clear_now)
        else:
            self._clear_now()

    def _clear_now(self) -> None:
        if self.audio_out is not None:
            self.audio_out.clear()
        for listener in list(self.clear_listeners):
            listener()

    async def handle_extra(self, extra: Any) -> None:
        if isinstance(extra, AdditionalOutputs):
            self.send_message({"type": "fetch_output", "data": []})
            self.queue_output(extra)
        elif isinstance(extra, CloseStream):
            self.send_message({"type": "end_stream", "data": extra.msg})
            self.request_close("closed_by_handler")

    # -- outputs to subscribers --------------------------------------------------------

    def queue_output(self, output: AdditionalOutputs) -> None:
        """Hand an output to the session's publisher; never waits, never fails.

        One task publishes the outputs in order (``_publish_outputs``), so neither
        the media nor the handler waits on the channel layer. While the layer is
        away the newest ``OUTPUT_BUFFER`` outputs are kept, older ones dropped.
        """
        if len(self._outbox) >= OUTPUT_BUFFER:
            self._outbox.popleft()
            self._outputs_dropped += 1
        self._outbox.append(output)
        self._outbox_wake.set()
        if self._publisher is None:
            self._publisher = background.start(
                self._publish_outputs(),
                "output publisher",
                webrtc_id=self.webrtc_id,
                loop=self.loop,
            )

    async def _publish_outputs(self) -> None:
        failures = 0
        while True:
            if not self._outbox:
                if self._outbox_closing.is_set():
                    return
                self._outbox_wake.clear()
                await self._outbox_wake.wait()
                continue
            output = self._outbox[0]
            if await bus.publish_output(self.webrtc_id, output):
                if self._outbox and self._outbox[0] is output:
                    self._outbox.popleft()
                if failures:
                    logger.info(
                        "Outputs of session %s reach the channel layer again; %d were "
                        "dropped while it was away",
                        self.webrtc_id,
                        self._outputs_dropped,
                    )
                    failures = self._outputs_dropped = 0
                continue
            failures += 1
            if failures == 1:  # one warning per outage, not one per output
                logger.warning(
                    "Outputs of session %s cannot reach the channel layer: the "
                    "newest %d are kept and published when it is back, older ones "
                    "dropped; the session goes on",
                    self.webrtc_id,
                    OUTPUT_BUFFER,
                )
            if self._outbox_closing.is_set():
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._outbox_closing.wait(), bus.backoff(failures))

    async def _finish_outputs(self) -> None:
        """Closing: give the kept outputs a moment to go out, before the end marker."""
        task = self._publisher
        if task is None:
            return
        self._outbox_closing.set()
        self._outbox_wake.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(task), OUTPUT_FLUSH_WAIT)
        if not task.done():
            task.cancel()
        if self._outbox or self._outputs_dropped:
            logger.warning(
                "Session %s ended with %d outputs never published (the channel layer was away)",
                self.webrtc_id,
                len(self._outbox) + self._outputs_dropped,
            )

    # -- inputs, candidates, control -------------------------------------------------

    def set_inputs(self, values: list[Any]) -> None:
        """New input values: the handler sees them on its next call."""
        previous, self.inputs = self.inputs, list(values)
        self._signal(
            signals.inputs_changed, record_id=self.record_id, inputs=list(values), previous=previous
        )
        if self.handler is not None:
            self.handler.set_args(list(values))
        self._generator_stale = True
        self.spawn(
            self._save(records.save_inputs(self.record_id, self.inputs), "inputs"), "save-inputs"
        )

    async def _save(self, write: Any, *fields: str) -> None:
        """Await a record write; if the database is away, leave ``fields`` to the
        heartbeat instead of failing the session (one warning per outage is logged by
        ``records``)."""
        try:
            await write
        except DatabaseUnavailable:
            self.unsaved.update(fields)

    def _mark_connected(self) -> Any:
        from django.utils import timezone

        self.connected_at = timezone.now()
        return self._save(records.mark_connected(self.record_id), "connected")

    def record_fields(self) -> dict[str, Any]:
        """What the heartbeat writes to the record: the counters, and the fields of
        ``unsaved`` with their current values."""
        fields: dict[str, Any] = self.counters()
        if "inputs" in self.unsaved:
            fields["inputs"] = list(self.inputs)
        if "connected" in self.unsaved:
            fields.update(state=SessionState.CONNECTED, connected_at=self.connected_at)
        fields.update(self.stats.record_fields())  # latest stats sample and history
        return fields

    def update_inputs(self, changes: dict[str, Any]) -> list[Any]:
        """Set some inputs by name (cleaned values), keeping the others; the new values.

        Read, merge and set happen on the session's loop with no ``await`` between
        them, so concurrent updates apply one at a time, each on the result of the one
        before, and each caller learns the values exactly as its update left them.
        """
        values = self.stream.inputs.merge(self.inputs, changes)
        self.set_inputs(values)
        return values

    async def add_candidate(self, candidate: dict[str, Any] | None) -> None:
        if not self._remote_set:
            self._early_candidates.append(candidate)
            return
        if self.pc is None:
            return
        await self.pc.addIceCandidate(parse_candidate(candidate))

    async def control_loop(self) -> None:
        """Read the session's control channel (inputs, candidates, closes from any worker).

        The channel is a key in the broker that senders write to and this loop reads:
        after a broker restart, reading again is all it takes. A failed read (the broker
        is away, or redis-py's socket timeout cut a blocking read, see check W002) never
        ends the session: the loop retries with a bounded backoff and warns once until
        a message arrives again.
        """
        channel_layer = bus.layer()
        name = bus.control_channel(self.webrtc_id)
        failures = 0
        warned = False
        while True:
            started = self.loop.time()
            try:
                message = await channel_layer.receive(name)
            except Exception as exc:
                if self.loop.time() - started >= 1.0:
                    failures = 0  # it had been reading for a while: a cut read, not an outage
                failures += 1
                if not warned:
                    logger.warning(
                        "Control channel of %s: receive failed (%r); retrying", self.webrtc_id, exc
                    )
                    warned = True
                await asyncio.sleep(bus.backoff(failures))
                continue
            bus.retrieve_cleaner_errors(channel_layer)
            if warned:
                logger.info(
                    "Control channel of %s: the channel layer answers again", self.webrtc_id
                )
            failures, warned = 0, False
            kind = message.get("type")
            try:
                if kind == "rtc.ice":
                    await self.add_candidate(message.get("candidate"))
                elif kind == "rtc.input":
                    self.set_inputs(message["values"])
                elif kind == "rtc.input_update":
                    values = self.update_inputs(message["changes"])
                    await channel_layer.send(
                        message["reply"], {"type": "rtc.inputs", "values": values}
                    )
                elif kind == "rtc.close":
                    # A close meant for an earlier session that used this id is stale.
                    if message.get("sent_at", 0) >= self.started_wall - 1.0:
                        self.request_close(message.get("reason") or "closed_by_server")
            except Exception:
                logger.warning(
                    "Bad control message for %s: %r", self.webrtc_id, message, exc_info=True
                )

    # -- WebSocket / telephone start ----------------------------------------------------

    async def start_socket(self, *, phone: bool = False, websocket: Any = None) -> None:
        """Start a session whose audio a WebSocket consumer carries (no peer connection).

        The consumer pushes decoded input frames into ``audio_input`` and plays
        ``audio_out``; everything else (handler, inputs, outputs, limits,
        records) is the same as for WebRTC.
        """
        if self.stream.modality != "audio":
            raise SignalingError(
                "unsupported_modality",
                f"Stream {self.stream.name!r} is {self.stream.modality}; audio over WebSocket and "
                "telephone need an audio stream.",
            )
        if self.handler is not None:
            self.handler.phone_mode = phone
        self.context.run(
            _current_context.set, Context(self.webrtc_id, self.stream.name or "", websocket)
        )
        if self.stream.receives_media_from_client:
            self.audio_input = PushedAudioTrack()
            self._remote_tracks["audio"] = self.audio_input
        if self.stream.sends_media_to_client:
            rate = self.handler.output_sample_rate if self.handler is not None else 48000
            self.audio_out = AudioOutput(rate)
        self.connected.set()
        self.spawn(self._mark_connected(), "mark-connected")
        if self.stream.time_limit:
            self.spawn(self._time_limit(), "time-limit")
        self.activate()

    # -- WebRTC start ------------------------------------------------------------------

    async def start_webrtc(self, offer_sdp: str) -> str:
        """Answer an offer; returns the answer SDP (with every server candidate).

        Nothing of the handler runs yet: ``activate()`` follows admission, which the
        manager runs concurrently with this negotiation.
        """
        kinds = self._check_offer(offer_sdp)
        self.pc = pc = RTCPeerConnection(
            ice.rtc_configuration(
                (self.stream.server_rtc_configuration or {}).get("iceServers")
                if self.stream.server_rtc_configuration is not None
                else rtc_settings.SERVER_ICE_SERVERS
            )
        )
        pc.on("track", self._on_track)
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_state)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        except Exception as exc:
            raise SignalingError("invalid_offer", f"The offer was refused: {exc}") from exc
        self._remote_set = True
        for candidate in self._early_candidates:
            try:
                await pc.addIceCandidate(parse_candidate(candidate))
            except Exception:
                logger.info("Ignoring a bad early candidate for %s", self.webrtc_id)
        self._early_candidates.clear()
        if "video" in self._remote_tracks:
            handler = self.stream.handler
            in_order = isinstance(handler, VideoStreamHandler) and not handler.skip_frames
            self._latest_video = (
                EveryFrame(self._remote_tracks["video"], self.stream.fps)
                if in_order
                else LatestFrame(self._remote_tracks["video"])
            )
        self._build_outputs(kinds)
        try:
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except Exception as exc:  # aiortc took an offer it cannot answer (e.g. no direction)
            logger.info(
                "Offer for %s accepted by aiortc but not answerable: %r", self.webrtc_id, exc
            )
            raise SignalingError(
                "invalid_offer",
                f"The offer was refused: it cannot be answered ({type(exc).__name__}: {exc}).",
            ) from exc
        return pc.localDescription.sdp

    def activate(self) -> None:
        """Once admitted: listen on the control channel, start the handler and the clocks."""
        self.admitted = True
        self._signal(
            signals.session_started,
            channel=self.channel,
            record_id=self.record_id,
            user_id=self.user_id,
        )
        self.spawn(self.control_loop(), "control")
        self.stats.start()  # samples every STATS_INTERVAL once connected (sessions/stats.py)
        if self.pc is not None:
            self.spawn(self._connect_timeout(), "connect-timeout")
        self.spawn(self._run(), "run")

    def _check_offer(self, sdp: str) -> set[str]:
        kinds = set(read_offer(sdp).kinds)
        extra = kinds - set(self.stream.kinds)
        if extra and not self.stream.allow_extra_tracks:
            raise SignalingError(
                "unsupported_track",
                f"Stream {self.stream.name!r} is {self.stream.modality}; the offer has "
                f"{', '.join(sorted(extra))} (set allow_extra_tracks=True to ignore it).",
            )
        missing = set(self.stream.kinds) - kinds
        if missing and kinds:
            raise SignalingError(
                "invalid_offer",
                f"Stream {self.stream.name!r} is {self.stream.modality}; the offer has no "
                f"{', '.join(sorted(missing))} section.",
            )
        return kinds

    def _on_track(self, track: MediaStreamTrack) -> None:
        stream = self.stream
        buffer = jitter.install_on_track(
            self.pc,
            track,
            _or(stream.audio_prefetch, rtc_settings.AUDIO_PREFETCH),
            _or(stream.audio_adaptive, rtc_settings.AUDIO_ADAPTIVE),
            _or(stream.video_marker_release, rtc_settings.VIDEO_MARKER_RELEASE),
        )
        if track.kind == "audio":
            self.jitter_buffer = buffer
        else:
            self.video_jitter_buffer = buffer
        if track.kind in self.stream.kinds and self.stream.receives_media_from_client:
            self._remote_tracks[track.kind] = track
        else:
            # Unused tracks are still drained: aiortc's remote queues are unbounded.
            self.spawn(_drain(track), f"drain-{track.kind}")

    def _on_datachannel(self, channel: Any) -> None:
        self.data_channel = channel
        while self._pending and channel.readyState == "open":
            channel.send(self._pending.popleft())
        self._channel_opened.set()

        @channel.on("message")
        def on_message(message: Any) -> None:
            if isinstance(message, str) and message.strip().startswith("{"):
                try:
                    data = safejson.loads(message)
                except ValueError:
                    return
                if isinstance(data, dict) and data.get("type") == "ping":
                    self.send_message({"type": "pong", "data": data.get("data")})
                elif isinstance(data, dict) and data.get("type") == "stats":  # (un)subscribe
                    self.stats.on_client_message(data.get("data"))

    async def _on_state(self) -> None:
        assert self.pc is not None
        state = self.pc.connectionState
        if state == "connected" and not self.connected.is_set():
            self.connected.set()
            self.send_message({"type": "connection", "data": "connected"})
            await self._mark_connected()
            if self.stream.time_limit:
                self.spawn(self._time_limit(), "time-limit")
        elif state == "failed":
            self.request_close("ice_failed", SessionState.FAILED)
        elif state == "closed":
            self.request_close("peer_closed")

    async def _connect_timeout(self) -> None:
        try:
            await asyncio.wait_for(self.connected.wait(), rtc_settings.CONNECT_TIMEOUT)
        except asyncio.TimeoutError:
            self.request_close("connect_timeout", SessionState.FAILED)

    async def _time_limit(self) -> None:
        assert self.stream.time_limit is not None
        await asyncio.sleep(self.stream.time_limit)
        self.send_message({"type": "end_stream", "data": "time_limit"})
        self.request_close("time_limit")

    # -- pipelines -----------------------------------------------------------------------

    def _build_outputs(self, kinds: set[str]) -> None:
        """Attach the tracks the server sends, before the answer is created."""
        if not self.stream.sends_media_to_client:
            return
        assert self.pc is not None
        if "audio" in self.stream.kinds and "audio" in kinds:
            rate = self.handler.output_sample_rate if self.handler is not None else 48000
            self.audio_out = AudioOutput(rate)
            track: MediaStreamTrack = PacedAudioTrack(self.audio_out)
            self.pc.addTrack(track)
            self._out_tracks.append(track)
        if "video" in self.stream.kinds and "video" in kinds:
            track = ProducedVideoTrack(self._produce_video_or_fail)
            self.pc.addTrack(track)
            self._out_tracks.append(track)

    async def _run(self) -> None:
        """Start the handler's ``start_up()`` and the pipelines its modality and mode need.

        As in FastRTC, ``start_up()`` runs beside the media, not before it: a
        handler may keep a connection open in it for the whole session. If it
        raises, the session fails with its error.
        """
        self.started_up = True
        if self.handler is not None:
            self.spawn(self.call(self.handler.start_up), "start-up")
        self.ready.set()
        stream = self.stream
        if self._latest_video is not None:
            self.spawn(self._latest_video.run(), "video-in")
            if stream.mode == "send":
                self.spawn(self._video_sink(), "video-handler")
        if "audio" in self._remote_tracks:
            self.spawn(self._audio_in(self._remote_tracks["audio"]), "audio-in")
        if "audio" in stream.kinds and (self.handler is not None or stream.mode == "receive"):
            self.spawn(self._audio_pump(), "audio-out")

    async def _audio_in(self, track: MediaStreamTrack) -> None:
        assert self.handler is not None
        converter = AudioInput(self.handler.input_sample_rate, self.handler.expected_layout)
        receive = self.handler.receive  # type: ignore[attr-defined]
        if inspect.iscoroutinefunction(receive):
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    return
                self.frames_in += 1
                for chunk in converter.convert(frame):
                    await receive(chunk)
                self.arrivals.tick()
        # Sync code runs in the pool, frames in order; the conversion (a resampling,
        # from aiortc's stereo) stays off the event loop, which also answers offers.
        feed = SerialFeed(
            self.loop,
            self.manager.executor,
            functools.partial(_convert_and_receive, self.loop, converter, receive),
            self.context,
            self.fail,
            self.arrivals.tick_threadsafe,
            label=self.call_label(receive),
            owner=self,
        )
        try:
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    return  # what is queued is still handled
                self.frames_in += 1
                feed.put(frame)
                if feed.backlog > FEED_BACKLOG:  # receive() is slower than real time
                    await feed.wait_backlog(FEED_BACKLOG // 2)
        except asyncio.CancelledError:
            feed.stop()
            raise

    async def _next_audio_item(self) -> Any:
        """The next thing the handler (emit) or generator produces for audio output."""
        if self.fn is not None:
            return await self._next_from_generator()
        assert self.handler is not None
        emit = self.handler.emit  # type: ignore[attr-defined]
        if self._emit_thread is None and not inspect.iscoroutinefunction(emit):
            # A sync emit() may block until there is output (FastRTC's queue.get()
            # idiom), and for ever once the session has ended: never in the pool.
            self._emit_thread = OwnThread(
                self.manager.executor.calls, f"rtcstream-emit-{self.webrtc_id[:12]}"
            )
        return await self.call(emit, executor=self._emit_thread)

    async def _audio_pump(self) -> None:
        """Pull audio from the handler only as fast as it is played (bounded queue)."""
        out = self.audio_out
        while True:
            if out is not None:
                while out.buffered_seconds >= AUDIO_BUFFER_AHEAD:
                    out.space.clear()
                    await out.space.wait()
            seen = self.arrivals.count
            try:
                item = await self._next_audio_item()
            except _Ended:
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
                await self.handle_extra(extra)

    async def _finish_after_playout(self) -> None:
        if self.audio_out is not None:
            while self.audio_out.buffered_seconds > 0:
                self.audio_out.space.clear()
                await self.audio_out.space.wait()
            await asyncio.sleep(0.1)
        self.send_message({"type": "end_stream", "data": "handler_finished"})
        self.request_close("handler_finished")

    async def _next_from_generator(self) -> Any:
        """Receive-mode generators: ``fn(*inputs)``, restarted when inputs change."""
        assert self.fn is not None
        if self._generator is None or self._generator_stale:
            await self._close_generator()
            self._generator_stale = False
            self._generator = self.fn(*self.inputs)
        gen = self._generator
        if inspect.isasyncgen(gen):
            try:
                return await gen.__anext__()
            except StopAsyncIteration:
                raise _Ended from None
        return await self.call(_next_or_end, gen)

    async def _close_generator(self) -> None:
        gen, self._generator = self._generator, None
        if gen is None:
            return
        if inspect.isasyncgen(gen):
            await gen.aclose()
        else:
            await self.call(gen.close)

    async def _produce_video_or_fail(self) -> Any:
        """aiortc's sender swallows errors from recv(): report them ourselves."""
        try:
            return await self._produce_video()
        except (MediaStreamError, asyncio.CancelledError):
            raise
        except Exception as exc:
            self.fail(exc)
            raise MediaStreamError from exc

    async def _produce_video(self) -> Any:
        """The next outgoing video frame, for every video mode that sends."""
        await self.ready.wait()
        fmt = self.stream.video_format
        if self.stream.mode == "receive":
            return await self._produce_generated_video(fmt)
        if self._latest_video is None:  # the offer sent no video to transform
            raise MediaStreamError
        frame = await self._latest_video.next()
        self.frames_in += 1
        if self.fn is not None:
            # One pool hop per frame: convert, call, convert back.
            out, extra = await self.call(_transform_video, self.fn, frame, fmt, self.inputs)
            if extra is not None:
                await self.handle_extra(extra)
            self.frames_out += 1
            if out is None:
                return self._last_video_out or frame
            self._last_video_out = out
            return out
        else:
            assert self.handler is not None
            array = await self.call(video_to_array, frame, fmt)
            received = await self.call(self.handler.video_receive, array)  # type: ignore[attr-defined]
            _, extra = split_result(received)
            if extra is not None:
                await self.handle_extra(extra)
            result = await self.call(self.handler.video_emit)  # type: ignore[attr-defined]
        media, extra = split_result(result)
        if extra is not None:
            await self.handle_extra(extra)
        self.frames_out += 1
        if media is None:
            return self._last_video_out or frame
        out = await self.call(array_to_video, media, fmt, frame)
        self._last_video_out = out
        return out

    async def _produce_generated_video(self, fmt: str) -> Any:
        clock = getattr(self, "_clock", None)
        if clock is None:
            clock = self._clock = VideoClock(self.stream.fps)
        while True:
            if self.fn is not None:
                try:
                    item = await self._next_from_generator()
                except _Ended:
                    self.send_message({"type": "end_stream", "data": "handler_finished"})
                    self.request_close("handler_finished")
                    raise MediaStreamError from None
            else:
                assert self.handler is not None
                item = await self.call(self.handler.video_emit)  # type: ignore[attr-defined]
            media, extra = split_result(item)
            if extra is not None:
                await self.handle_extra(extra)
            if media is None:
                if self._last_video_out is None:
                    await asyncio.sleep(0.01)
                    continue
                frame = self._last_video_out
            else:
                frame = await self.call(array_to_video, media, fmt, None)
                self._last_video_out = frame
            self.frames_out += 1
            return await clock.tick(frame)

    async def _video_sink(self) -> None:
        """Send mode: the handler sees the latest frames; only its extras go anywhere."""
        assert self._latest_video is not None
        fmt = self.stream.video_format
        while True:
            try:
                frame = await self._latest_video.next()
            except MediaStreamError:
                return
            self.frames_in += 1
            if self.fn is not None:
                result = await self.call(_apply_video_fn, self.fn, frame, fmt, self.inputs)
            else:
                assert self.handler is not None
                array = await self.call(video_to_array, frame, fmt)
                result = await self.call(self.handler.video_receive, array)  # type: ignore[attr-defined]
            _, extra = split_result(result)
            if extra is not None:
                await self.handle_extra(extra)

    async def _let_calls_finish(self) -> None:
        """Give handler calls in flight a moment to return, so the record counts as
        stuck only the calls that really are (a blocked ``emit()``)."""
        calls = self.manager.executor.calls
        deadline = self.loop.time() + ENDED_GRACE
        while calls.running(self) > len(calls.stuck(self)) and self.loop.time() < deadline:
            await asyncio.sleep(0.02)

    def counters(self) -> dict[str, int]:
        return {
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "messages_out": self.messages_out,
            "stuck_calls": len(self.manager.executor.calls.stuck(owner=self)),
        }

    # -- closing -------------------------------------------------------------------------

    def request_close(self, reason: str, state: str = SessionState.CLOSED) -> None:
        if self._close_task is None:
            # In the session's context: an async shutdown() may call get_current_context().
            self._close_task = self.loop.create_task(
                self._close(reason, state), context=self.context.copy()
            )
            self._close_task.add_done_callback(self._close_done)

    def _signal(self, signal: Any, **kwargs: Any) -> None:
        """Send one of ``django_rtcstream.signals`` for this session, without waiting."""
        if signal.has_listeners(self.stream):
            # A fresh context: the caller's may be a request's async_to_sync, whose
            # thread executor is gone by the time a sync receiver would run in it.
            background.start(
                signals.send(signal, self.stream, webrtc_id=self.webrtc_id, **kwargs),
                "signal",
                webrtc_id=self.webrtc_id,
                loop=self.loop,
                context=contextvars.Context(),
            )

    def _close_done(self, task: asyncio.Task[None]) -> None:
        """Nobody may await a close: its failure (a records write) is logged here."""
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "Closing session %s/%s failed",
                self.stream.name,
                self.webrtc_id,
                exc_info=task.exception(),
            )

    async def close(
        self, reason: str = "closed_by_server", state: str = SessionState.CLOSED
    ) -> None:
        """Close the session (idempotent) and wait until it is fully closed."""
        self.request_close(reason, state)
        assert self._close_task is not None
        await asyncio.shield(self._close_task)

    async def _close(self, reason: str, state: str) -> None:
        self.close_reason = reason
        logger.info("Closing session %s/%s: %s", self.stream.name, self.webrtc_id, reason)
        for listener in list(self.listeners):
            listener({"type": "closed", "data": reason})
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for track in self._out_tracks:
            track.stop()
        try:
            if self.handler is not None and self.started_up:
                await self.call(self.handler.shutdown)
            await self._close_generator()
        except Exception:
            logger.exception("shutdown() raised in session %s", self.webrtc_id)
        finally:
            if self.handler is not None and self.started_up:
                self.handler.reset()
        await self._finish_outputs()
        if self._pending and self.pc is not None and self.data_channel is None:
            # Failed before the data channel opened (e.g. in start_up): let the client
            # read why, briefly, before the connection goes.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._channel_opened.wait(), PENDING_FLUSH_WAIT)
        self.closed.set()
        if self.handler is not None:
            self.handler.args_set.wake()
        if self._emit_thread is not None:
            self._emit_thread.shutdown()
        self.manager.executor.calls.owner_ended(self)
        if self.pc is not None:
            await self.pc.close()
        self.manager.forget(self)
        if not self.admitted and self.admission is not None:
            # Closed while its admission was still running (ICE failed mid-offer):
            # if the record was written, it must be closed too.
            try:
                await self.admission
                self.admitted = True
            except Exception:
                pass
        if not self.admitted:
            return  # refused at admission: no record, nobody subscribed
        await self._let_calls_finish()
        from django.utils import timezone

        closed = (state, reason, self.counters(), timezone.now(), self.stats.close_fields())
        try:
            await records.mark_closed(self.record_id, *closed)
            self._signal(
                signals.session_ended,
                channel=self.channel,
                record_id=self.record_id,
                reason=reason,
                state=state,
                counters=closed[2],
            )
        except DatabaseUnavailable:
            # The heartbeat writes it once the database is back; meanwhile this worker
            # does not reap the record, and the others wait a lease after the outage.
            self.manager.unsaved_closes[self.record_id] = closed
        finally:
            await bus.publish_end(self.webrtc_id)  # never raises: the record tells too


def _convert_and_receive(
    loop: asyncio.AbstractEventLoop, converter: AudioInput, receive: Callable[..., Any], frame: Any
) -> None:
    for chunk in converter.convert(frame):
        result = receive(chunk)
        if inspect.isawaitable(result):  # a sync callable that returned a coroutine
            asyncio.run_coroutine_threadsafe(result, loop).result()


def _or(value: Any, default: Any) -> Any:
    """A stream's own option, or the setting when the stream leaves it None."""
    return default if value is None else value


def _next_or_end(gen: Any) -> Any:
    try:
        return next(gen)
    except StopIteration:
        raise _Ended from None


def _apply_video_fn(fn: Callable[..., Any], frame: Any, fmt: str, inputs: list[Any]) -> Any:
    """Runs in the pool: convert, call the user's function with the inputs after the frame."""
    return fn(video_to_array(frame, fmt), *inputs)


def _transform_video(
    fn: Callable[..., Any], frame: Any, fmt: str, inputs: list[Any]
) -> tuple[Any, Any]:
    """Runs in the pool: the whole send-receive step, ``(output frame or None, extra)``."""
    media, extra = split_result(_apply_video_fn(fn, frame, fmt, inputs))
    return (array_to_video(media, fmt, frame) if media is not None else None), extra


async def _drain(track: MediaStreamTrack) -> None:
    try:
        while True:
            await track.recv()
    except MediaStreamError:
        return


class SessionManager:
    """The sessions of this worker process, and its handler thread pool.

    This is the one per-process table, on purpose: a peer connection cannot
    leave the process that created it. Other workers never read it; they
    reach sessions through the control bus.
    """

    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        # record id -> mark_closed's arguments, for sessions that closed while the
        # database was away: the heartbeat writes them.
        self.unsaved_closes: dict[Any, tuple[str, str, dict[str, int], Any, dict[str, Any]]] = {}
        self._ended_since_trim = False
        self.executor = HandlerPool(
            rtc_settings.HANDLER_THREADS, stuck_after=rtc_settings.HANDLER_STUCK_AFTER
        )
        self.worker = rtc_settings.worker_name()
        self.loop_thread = threading.get_ident()
        ice.install_host_addresses(rtc_settings.ICE_HOST_ADDRESSES)
        ice.install_port_range(rtc_settings.UDP_PORT_RANGE)
        if rtc_settings.AUDIO_PREFETCH is not None or rtc_settings.VIDEO_MARKER_RELEASE:
            jitter.check_seam()

    def get(self, webrtc_id: str) -> Session | None:
        return self.sessions.get(webrtc_id)

    def forget(self, session: Session) -> None:
        if self.sessions.get(session.webrtc_id) is session:
            del self.sessions[session.webrtc_id]
            self._ended_since_trim = True

    async def open(
        self,
        stream: Stream,
        webrtc_id: str,
        *,
        channel: str = "webrtc",
        client_address: str | None = None,
        user_id: Any = None,
        call_sid: str = "",
        inputs: list[Any] | None = None,
    ) -> Session:
        """Admit a session (limits, duplicates) and register it on this worker.

        The caller starts it (``start_socket``); ``open_webrtc`` does both for offers.
        """
        session = self._new_session(stream, webrtc_id)
        session.channel, session.user_id = channel, user_id
        try:
            await self._admit(
                session,
                channel=channel,
                client_address=client_address,
                user_id=user_id,
                call_sid=call_sid,
                inputs=inputs,
            )
        except BaseException:
            self.forget(session)
            raise
        session.admitted = True
        if inputs is not None:
            session.set_inputs(inputs)
        return session

    def _new_session(self, stream: Stream, webrtc_id: str) -> Session:
        from django_rtcstream.api.permissions import new_token

        self.loop_thread = threading.get_ident()
        self._ensure_heartbeat()
        if webrtc_id in self.sessions:  # the database would refuse it too; save the trip
            raise SignalingError(
                "connection_already_exists",
                f"A live session with webrtc_id {webrtc_id!r} already exists.",
                status=409,
            )
        session = Session(self, stream, webrtc_id, uuid.uuid4())
        session.token, session.token_hash = new_token()
        self.sessions[webrtc_id] = session
        bus.session_registered(webrtc_id)
        return session

    def own_records(self) -> list[Any]:
        """Record ids of this worker's sessions (and of those whose close is still to be
        written): never reaped by this worker."""
        return [*(s.record_id for s in self.sessions.values() if s.admitted), *self.unsaved_closes]

    def _admit(
        self, session: Session, *, inputs: list[Any] | None = None, **fields: Any
    ) -> asyncio.Future[Any]:
        stream = session.stream
        return records.admit(
            stream.name or "",
            session.webrtc_id,
            stream.concurrency_limit,
            rtc_settings.SESSION_LEASE,
            keep=self.own_records() if stream.concurrency_limit is not None else (),
            id=session.record_id,
            token_hash=session.token_hash,
            worker=self.worker,
            inputs=inputs if inputs is not None else stream.inputs.defaults(),
            **fields,
        )

    async def open_webrtc(
        self, stream: Stream, webrtc_id: str, offer_sdp: str, **kwargs: Any
    ) -> tuple[Session, str]:
        """Admit and answer at the same time, then start; a refused offer keeps no slot.

        Admission (a database transaction) runs while aiortc negotiates and gathers
        candidates, so signaling costs little more than aiortc itself. The handler
        starts only once the session is admitted.
        """
        session = self._new_session(stream, webrtc_id)
        session.user_id = kwargs.get("user_id")
        # Recorded as connecting from the start: the answer is on its way (one write less).
        admission = self._admit(session, channel="webrtc", state=SessionState.CONNECTING, **kwargs)
        session.admission = admission
        try:
            answer = await session.start_webrtc(offer_sdp)
        except BaseException as exc:
            try:
                await admission
                session.admitted = True
            except Exception:
                pass
            code = exc.code if isinstance(exc, SignalingError) else "offer_error"
            await session.close(code, SessionState.FAILED)
            raise
        try:
            await admission
        except BaseException:
            await session.close("refused", SessionState.FAILED)
            raise
        if session.ended:  # the peer connection failed or closed before the answer left
            await session.close()
            raise SignalingError(
                "connection_closed",
                "The connection ended while the offer was being answered.",
                status=409,
            )
        session.activate()
        return session, answer

    def start_heartbeat(self) -> None:
        """Start heartbeating (and reaping dead workers' sessions) on the running loop,
        if not yet: the server's first request does (``asgi``), the first session too."""
        self.loop_thread = threading.get_ident()
        self._ensure_heartbeat()

    def _ensure_heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        task = getattr(self, "_heartbeat_task", None)
        if task is None or task.done() or task.get_loop() is not loop:
            self._heartbeat_task = loop.create_task(self._heartbeat(), name="rtcstream:heartbeat")

    async def _heartbeat(self) -> None:
        """Keep this worker's leases fresh, publish counters, reap dead workers' sessions,
        and give back the memory of sessions that ended since the last beat.

        Nothing here waits on the channel layer: a beat that waited for a broker that is
        away (the end marker of a reaped session) let this worker's own leases expire,
        and the other workers reaped its live sessions (hooks then answered 404).

        While the database is away the beats fail quietly (``records`` warns once); the
        first beat that reaches it again writes what the sessions could not (counters,
        inputs, connections, closes). Other workers' sessions are reaped only once the
        database has been reachable for a whole lease: after an outage every lease looks
        expired, and their workers need a beat to refresh them.
        """
        while True:
            await asyncio.sleep(rtc_settings.HEARTBEAT_INTERVAL)
            try:
                await self._beat()
            except DatabaseUnavailable:
                pass  # records warned once for the outage; the next beat catches up
            except Exception:
                logger.exception("Session heartbeat failed")
            if self._ended_since_trim and rtc_settings.TRIM_MEMORY:
                self._ended_since_trim = False
                await memory.release(idle=not self.sessions)

    async def _beat(self) -> None:
        for record_id, closed in list(self.unsaved_closes.items()):
            await records.mark_closed(record_id, *closed)
            del self.unsaved_closes[record_id]
        running = {s.record_id: s for s in self.sessions.values() if not s.closed.is_set()}
        unsaved = {rid: set(s.unsaved) for rid, s in running.items()}
        lost = await records.heartbeat({rid: s.record_fields() for rid, s in running.items()})
        for record_id, session in running.items():
            session.unsaved -= unsaved[record_id]
        for record_id in lost:
            await self._reclaim(running[record_id])
        lease = rtc_settings.SESSION_LEASE
        if records.reachable_for() < lease:
            return
        for webrtc_id in await records.reap(lease, keep=self.own_records()):
            logger.warning("Reaped session %s: its worker stopped heartbeating", webrtc_id)
            background.start(bus.publish_end(webrtc_id), "end marker", webrtc_id=webrtc_id)

    async def _reclaim(self, session: Session) -> None:
        """A running session's record was reaped (this worker's heartbeat came too late):
        take it back, or close the session if its record ended for another reason."""
        if session.ended or not session.admitted:
            return
        state = SessionState.CONNECTED if session.connected.is_set() else SessionState.CONNECTING
        if await records.reclaim(session.record_id, state):
            logger.warning(
                "Session %s was reaped while it ran (its worker's heartbeat was "
                "late); its record is live again",
                session.webrtc_id,
            )
        else:
            logger.warning("Session %s lost its record while it ran; closing it", session.webrtc_id)
            session.request_close("record_lost", SessionState.FAILED)

    async def close_all(self, reason: str = "server_shutdown") -> None:
        await asyncio.gather(
            *(s.close(reason) for s in list(self.sessions.values())), return_exceptions=True
        )


_manager: SessionManager | None = None
_manager_lock = threading.Lock()


def local_session(webrtc_id: str) -> Session | None:
    """The session with this id if this process owns it (never creates the manager)."""
    return _manager.get(webrtc_id) if _manager is not None else None


def manager() -> SessionManager:
    """This process's session manager, created on first use."""
    global _manager
    if _manager is None:
        with _manager_lock:
            if _manager is None:
                _manager = SessionManager()
    return _manager
