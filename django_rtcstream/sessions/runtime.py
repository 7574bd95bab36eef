"""A live session's lifecycle, in the order a session lives.

A ``Session`` is created by the ``SessionManager`` (``sessions.manager``) of the
worker that admitted it and lives only there. It owns one handler copy (or the
stream's function), its transport (``sessions.webrtc`` or a socket's
``sessions.transport``) and the pipelines (``media.pipelines``) that move media
between them: start (offer or socket), activation once admitted, handler calls,
messages, inputs, timeouts, and the close that writes the record. What reaches
it from other workers arrives on its control channel (``sessions.control``);
what it reports goes to its record and its output group (``sessions.outbox``).

Sync handler code runs in the worker's bounded pool (``sessions.pool``), a
blocking ``emit()`` on the session's own thread; async handler code on the loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiortc.mediastreams import MediaStreamError
from django.utils import timezone

from django_rtcstream import background, signals
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
from django_rtcstream.media import pipelines
from django_rtcstream.media.arrivals import Arrivals
from django_rtcstream.media.feed import SerialFeed
from django_rtcstream.media.pipeline import Ended, Work
from django_rtcstream.models import SessionState
from django_rtcstream.sessions import bus, control, records
from django_rtcstream.sessions.outbox import Outbox
from django_rtcstream.sessions.pool import ENDED_GRACE, OwnThread
from django_rtcstream.sessions.transport import SocketTransport, Transport
from django_rtcstream.sessions.webrtc import WebRTCTransport
from django_rtcstream.stream import Stream

if TYPE_CHECKING:
    from django_rtcstream.sessions.manager import SessionManager

logger = logging.getLogger(__name__)


class Session(SessionPort):
    """One live streaming session on this worker."""

    def __init__(
        self, manager: SessionManager, stream: Stream, webrtc_id: str, record_id: Any
    ) -> None:
        self.manager, self.stream = manager, stream
        self.webrtc_id, self.record_id = webrtc_id, record_id
        self.loop = asyncio.get_running_loop()
        self.started_wall = time.time()
        self.inputs: list[Any] = stream.inputs.defaults()
        self.handler: StreamHandlerBase | None = None
        self.fn: Callable[..., Any] | None = None
        if isinstance(stream.handler, StreamHandlerBase):
            self.handler = stream.handler.copy()
            self.handler._attach(self)
            # The defaults, without args_set: that waits for the client's own values.
            self.handler.latest_args = ["__webrtc_value__", *self.inputs]
        elif isinstance(stream.handler, VideoStreamHandler):
            self.fn = stream.handler.callable
        else:
            self.fn = stream.handler
        self.is_async = self.handler is not None and is_async_handler(self.handler)
        self.context = contextvars.copy_context()
        self.context.run(_current_context.set, Context(webrtc_id, stream.name or ""))
        self.context.run(_current_port.set, self)
        self.transport: Transport = Transport()  # until the offer or the socket starts it
        self.pipelines = pipelines.Pipelines()
        self.arrivals = Arrivals()  # input frames handled, for the audio emitter
        self.outbox = Outbox(webrtc_id, self.loop)
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._close_task: asyncio.Task[None] | None = None
        self._own_thread: OwnThread | None = None
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.ready = asyncio.Event()  # start_up() has begun: pipelines may call the handler
        self.token = self.token_hash = ""
        self.channel = "webrtc"  # or "websocket", "phone": as in the record
        self.user_id: Any = None
        self.admitted = False  # the record exists (admission passed)
        self.admission: asyncio.Future[Any] | None = None  # an offer's, while it runs
        self.started_up = False  # start_up() was called: shutdown() is owed
        self.messages_out = 0
        self.connected_at: Any = None  # when the client connected (wall clock, aware)
        # Record fields a write could not store (the database was away): the heartbeat
        # stores them with the next beat that reaches it (see record_fields).
        self.unsaved: set[str] = set()

    def __repr__(self) -> str:
        return f"<Session {self.stream.name}/{self.webrtc_id}>"

    # -- starting -------------------------------------------------------------------------

    async def start_webrtc(self, offer_sdp: str) -> str:
        """Answer an offer; returns the answer SDP (with every server candidate).

        Nothing of the handler runs yet: ``activate()`` follows admission, which the
        manager runs concurrently with this negotiation.
        """
        transport = WebRTCTransport(self, self.stream)
        self.transport = transport
        self._choose_pipelines(await transport.receive_offer(offer_sdp))
        return await transport.answer()

    async def start_socket(
        self, transport: SocketTransport, *, phone: bool = False, websocket: Any = None
    ) -> None:
        """Start a session whose audio a socket consumer carries (no peer connection)."""
        if self.stream.modality != "audio":
            raise SignalingError(
                "unsupported_modality",
                f"Stream {self.stream.name!r} is {self.stream.modality}; audio over WebSocket "
                "and telephone need an audio stream.",
            )
        if self.handler is not None:
            self.handler.phone_mode = phone
        self.context.run(
            _current_context.set, Context(self.webrtc_id, self.stream.name or "", websocket)
        )
        self.transport = transport
        self._choose_pipelines(transport.media_in())
        self.connected.set()
        self.spawn(self._mark_connected(), "mark-connected")
        if self.stream.time_limit:
            self.spawn(self._time_limit(), "time-limit")
        self.activate()

    def _choose_pipelines(self, media: pipelines.MediaIn) -> None:
        self.pipelines = pipelines.choose(
            self, self.stream, self.handler, self.fn, media, self.arrivals
        )
        self.transport.attach(self.pipelines)

    def activate(self) -> None:
        """Once admitted: listen on the control channel, start the handler and the clocks."""
        self.admitted = True
        self._signal(
            signals.session_started,
            channel=self.channel,
            record_id=self.record_id,
            user_id=self.user_id,
        )
        self.spawn(control.read(self), "control")
        if isinstance(self.transport, WebRTCTransport):
            self.spawn(self._connect_timeout(), "connect-timeout")
        self.spawn(self._run(), "run")

    async def _run(self) -> None:
        """Start the handler's ``start_up()`` and the pipelines.

        As in FastRTC, ``start_up()`` runs beside the media, not before it: a
        handler may keep a connection open in it for the whole session. If it
        raises, the session fails with its error.
        """
        self.started_up = True
        if self.handler is not None:
            self.spawn(self.call(self.handler.start_up), "start-up")
        self.ready.set()
        for name, work in self.pipelines.tasks().items():
            self.spawn(work, name)

    async def on_connected(self) -> None:
        """The peer connection is up (WebRTC; a socket is connected from the start)."""
        self.connected.set()
        self.send_message({"type": "connection", "data": "connected"})
        await self._mark_connected()
        if self.stream.time_limit:
            self.spawn(self._time_limit(), "time-limit")

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

    # -- running handler code (the pipelines' host) ---------------------------------------

    def spawn(self, coro: Work, name: str) -> asyncio.Task[Any]:
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
        if exc is not None and not isinstance(exc, (Ended, MediaStreamError)):
            self.fail(exc)

    async def call(self, fn: Callable[..., Any], *args: Any, own_thread: bool = False) -> Any:
        """Run handler code: coroutines on the loop, sync code in the pool (or, with
        ``own_thread``, on the session's own thread: a blocking ``emit``)."""
        if inspect.iscoroutinefunction(fn):
            return await fn(*args)
        pool: Any = self.manager.executor
        if own_thread:
            if self._own_thread is None:
                name = f"rtcstream-emit-{self.webrtc_id[:12]}"
                self._own_thread = OwnThread(self.manager.executor.calls, name)
            pool = self._own_thread
        future = pool.submit_as(self.call_label(fn), self, self.context.copy().run, fn, *args)
        result = await asyncio.wrap_future(future, loop=self.loop)
        if inspect.isawaitable(result):
            return await result
        return result

    def serial_feed(
        self, fn: Callable[[Any], None], after: Callable[[], None], *, calls: Callable[..., Any]
    ) -> SerialFeed:
        return SerialFeed(
            self.loop,
            self.manager.executor,
            fn,
            self.context,
            self.fail,
            after,
            label=self.call_label(calls),
            owner=self,
        )

    def call_label(self, fn: Any) -> str:
        """How a stuck call is named in the log: stream, session and function."""
        name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
        return f"{name}() of stream {self.stream.name!r} (session {self.webrtc_id})"

    async def call_hook(self, name: str, *args: Any) -> None:
        """Call the handler's optional method ``name`` if it has one (``on_dtmf``)."""
        method = getattr(self.handler, name, None)
        if callable(method):
            await self.call(method, *args)

    async def handle_extra(self, extra: Any) -> None:
        if isinstance(extra, AdditionalOutputs):
            self.send_message({"type": "fetch_output", "data": []})
            self.outbox.put(extra)
        elif isinstance(extra, CloseStream):
            self.send_message({"type": "end_stream", "data": extra.msg})
            self.request_close("closed_by_handler")

    def queue_output(self, output: AdditionalOutputs) -> None:
        """Publish an output to the session's subscribers (in order; never waits)."""
        self.outbox.put(output)

    def fail(self, exc: BaseException) -> None:
        """A handler raised: tell the client, log it with the session id, close."""
        if self.ended:
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

    def finish(self) -> None:
        """The handler's source ended (a generator returned)."""
        self.send_message({"type": "end_stream", "data": "handler_finished"})
        self.request_close("handler_finished")

    @property
    def ended(self) -> bool:
        """Closing or closed: handler waits (``wait_for_args``) give up."""
        return self.closed.is_set() or self._close_task is not None

    # -- messages to the client ----------------------------------------------------------

    def subscribe(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Also hand every message to ``listener`` (a signaling socket), then the close."""
        self.listeners.append(listener)

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
        self.transport.send(message, json.dumps(message, default=str))
        for listener in list(self.listeners):
            listener(message)

    def clear_output(self) -> None:
        """Drop queued output audio (barge-in); socket transports also tell the far end."""
        if threading.get_ident() != self.manager.loop_thread:
            self.loop.call_soon_threadsafe(self._clear_now)
        else:
            self._clear_now()

    def _clear_now(self) -> None:
        if self.pipelines.audio_out is not None:
            self.pipelines.audio_out.clear()
        self.transport.clear()

    # -- inputs and candidates -----------------------------------------------------------

    def set_inputs(self, values: list[Any]) -> None:
        """New input values: the handler sees them on its next call."""
        previous, self.inputs = self.inputs, list(values)
        self._signal(
            signals.inputs_changed, record_id=self.record_id, inputs=list(values), previous=previous
        )
        if self.handler is not None:
            self.handler.set_args(list(values))
        self.pipelines.inputs_changed()
        self.spawn(self._save(records.save_inputs(self.record_id, self.inputs), "inputs"), "save")

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
        await self.transport.add_candidate(candidate)

    # -- the record ----------------------------------------------------------------------

    async def _save(self, write: Any, *fields: str) -> None:
        """Await a record write; if the database is away, leave ``fields`` to the
        heartbeat instead of failing the session (``records`` warns once an outage)."""
        try:
            await write
        except DatabaseUnavailable:
            self.unsaved.update(fields)

    def _mark_connected(self) -> Any:
        self.connected_at = timezone.now()
        return self._save(records.mark_connected(self.record_id), "connected")

    def counters(self) -> dict[str, int]:
        return {
            "frames_in": self.pipelines.frames_in,
            "frames_out": self.pipelines.frames_out,
            "messages_out": self.messages_out,
            "stuck_calls": len(self.manager.executor.calls.stuck(owner=self)),
        }

    def record_fields(self) -> dict[str, Any]:
        """What the heartbeat writes: the counters, and the ``unsaved`` fields' values."""
        fields: dict[str, Any] = self.counters()
        if "inputs" in self.unsaved:
            fields["inputs"] = list(self.inputs)
        if "connected" in self.unsaved:
            fields.update(state=SessionState.CONNECTED, connected_at=self.connected_at)
        return fields

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

    # -- closing -------------------------------------------------------------------------

    def request_close(self, reason: str, state: str = SessionState.CLOSED) -> None:
        if self._close_task is None:
            # In the session's context: an async shutdown() may call get_current_context().
            self._close_task = self.loop.create_task(
                self._close(reason, state), context=self.context.copy()
            )
            self._close_task.add_done_callback(self._close_done)

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
        self.transport.closing(reason)
        for listener in list(self.listeners):
            listener({"type": "closed", "data": reason})
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.transport.stop_media()
        try:
            if self.handler is not None and self.started_up:
                await self.call(self.handler.shutdown)
            await self.pipelines.close()
        except Exception:
            logger.exception("shutdown() raised in session %s", self.webrtc_id)
        finally:
            if self.handler is not None and self.started_up:
                self.handler.reset()
        await self.outbox.finish()
        await self.transport.flush()
        self.closed.set()
        if self.handler is not None:
            self.handler.args_set.wake()
        if self._own_thread is not None:
            self._own_thread.shutdown()
        self.manager.executor.calls.owner_ended(self)
        await self.transport.close()
        self.manager.forget(self)
        if not self.admitted and self.admission is not None:
            # Closed while its admission was still running (ICE failed mid-offer):
            # if the record was written, it must be closed too.
            try:
                await self.admission
                self.admitted = True
            except Exception:
                pass
        if self.admitted:  # else refused at admission: no record, nobody subscribed
            await self._write_close(reason, state)

    async def _write_close(self, reason: str, state: str) -> None:
        await self._let_calls_finish()
        closed = (state, reason, self.counters(), timezone.now())
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

    async def _let_calls_finish(self) -> None:
        """Give handler calls in flight a moment to return, so the record counts as
        stuck only the calls that really are (a blocked ``emit()``)."""
        calls = self.manager.executor.calls
        deadline = self.loop.time() + ENDED_GRACE
        while calls.running(self) > len(calls.stuck(self)) and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
