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
import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiortc.mediastreams import MediaStreamError

from django_rtcstream import metrics, signals
from django_rtcstream.conf import rtc_settings
from django_rtcstream.handlers import (
    AdditionalOutputs,
    CloseStream,
    Context,
    SessionPort,
    _current_context,
    _current_port,
    is_async_handler,
)
from django_rtcstream.media import pipelines
from django_rtcstream.media.arrivals import Arrivals
from django_rtcstream.media.feed import SerialFeed
from django_rtcstream.media.pipeline import Ended, Work
from django_rtcstream.models import SessionState
from django_rtcstream.sessions import control, outputs
from django_rtcstream.sessions.calls import SessionCalls, own_handler
from django_rtcstream.sessions.messenger import Messenger
from django_rtcstream.sessions.outbox import Outbox
from django_rtcstream.sessions.record import SessionRecord
from django_rtcstream.sessions.stats import StatsSampler
from django_rtcstream.sessions.transport import SocketTransport, Transport
from django_rtcstream.sessions.webrtc import WebRTCTransport

if TYPE_CHECKING:
    from django_rtcstream.sessions.manager import SessionManager
    from django_rtcstream.stream import Stream

logger = logging.getLogger(__name__)

# Closing: seconds the session's tasks get to end once cancelled, then how often those
# that swallowed the cancellation are cancelled again, and until when (Session._cancel_tasks).
CANCEL_GRACE = 1.0
RECANCEL_EVERY = 0.1
CANCEL_LIMIT = 5.0


class Session(SessionPort):
    """One live streaming session on this worker."""

    def __init__(
        self, manager: SessionManager, stream: Stream, webrtc_id: str, record_id: Any
    ) -> None:
        self.manager, self.stream = manager, stream
        self.webrtc_id, self.record_id = webrtc_id, record_id
        self.stats = StatsSampler(self)  # network and media figures (sessions/stats.py)
        self.record = SessionRecord(record_id, self.stats)  # its row, the stats included
        self.loop = asyncio.get_running_loop()
        self.started_wall = time.time()
        self.inputs: list[Any] = stream.inputs.defaults()
        self.handler, self.fn = own_handler(stream.handler, self, self.inputs)
        self.is_async = self.handler is not None and is_async_handler(self.handler)
        self.context = contextvars.copy_context()
        self.context.run(_current_context.set, Context(webrtc_id, stream.name or ""))
        self.context.run(_current_port.set, self)
        self.pipelines = pipelines.Pipelines()
        self.arrivals = Arrivals()  # input frames handled, for the audio emitter
        self.outbox = Outbox(webrtc_id, self.loop)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._close_task: asyncio.Task[None] | None = None
        self.calls = SessionCalls(
            self,
            manager.executor,
            self.loop,
            self.context,
            f"stream {stream.name!r} (session {webrtc_id})",
            f"rtcstream-emit-{webrtc_id[:12]}",
        )
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()
        self.transport: Transport = Transport()  # until the offer or the socket starts it
        self.messages = Messenger(self)
        self.close_reason = ""
        self.ready = asyncio.Event()  # start_up() has begun: pipelines may call the handler
        self.token = self.token_hash = ""
        self.channel = "webrtc"  # or "websocket", "phone": as in the record
        self.user_id: Any = None
        self.admitted = False  # the record exists (admission passed)
        self.admission: asyncio.Future[Any] | None = None  # an offer's, while it runs
        self.started_up = False  # start_up() was called: shutdown() is owed

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
        if self.handler is not None:
            self.handler.phone_mode = phone
        self.context.run(
            _current_context.set, Context(self.webrtc_id, self.stream.name or "", websocket)
        )
        self.transport = transport
        self._choose_pipelines(transport.media_in())
        self.connected.set()
        self.spawn(self.record.mark_connected(), "mark-connected")
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
        """Start the handler's ``start_up()``, the pipelines and the stats sampler.

        As in FastRTC, ``start_up()`` runs beside the media, not before it: a
        handler may keep a connection open in it for the whole session. If it
        raises, the session fails with its error.
        """
        self.started_up = True
        if self.handler is not None:
            self.spawn(self.call(self.handler.start_up), "start-up")
        self.ready.set()
        for name, work in {**self.pipelines.tasks(), **self.stats.tasks()}.items():
            self.spawn(work, name)

    async def on_connected(self) -> None:
        """The peer connection is up (WebRTC; a socket is connected from the start)."""
        self.connected.set()
        self.send_message({"type": "connection", "data": "connected"})
        await self.record.mark_connected()
        if self.stream.time_limit:
            self.spawn(self._time_limit(), "time-limit")

    async def _connect_timeout(self) -> None:
        try:
            await asyncio.wait_for(self.connected.wait(), rtc_settings.CONNECT_TIMEOUT)
        except TimeoutError:
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
        """Run handler code (see ``sessions.calls``); the pipelines' way in too."""
        return await self.calls.call(fn, *args, own_thread=own_thread)

    def serial_feed(
        self, fn: Callable[[Any], None], after: Callable[[], None], *, calls: Callable[..., Any]
    ) -> SerialFeed:
        return self.calls.serial_feed(fn, self.fail, after, calls)

    def timed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return metrics.timed(self, fn)

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

    def fail(self, exc: BaseException) -> None:
        """A handler raised: tell the client, log it with the session id, close."""
        if not self.ended:
            self.messages.report_failure(exc, f"{self.stream.name}/{self.webrtc_id}")
            self.request_close(f"handler_error: {type(exc).__name__}", SessionState.FAILED)

    def finish(self) -> None:
        """The handler's source ended (a generator returned)."""
        self.send_message({"type": "end_stream", "data": "handler_finished"})
        self.request_close("handler_finished")

    @property
    def ended(self) -> bool:
        """Closing or closed: handler waits (``wait_for_args``) give up."""
        return self.closed.is_set() or self._close_task is not None

    # -- messages to the client (see ``sessions.messenger``) --------------------------

    def on_loop_thread(self) -> bool:
        return threading.get_ident() == self.manager.loop_thread

    def send_message(self, message: dict[str, Any]) -> None:
        """Thread-safe: queue a ``{"type", "data"}`` message for the client."""
        self.messages.send(message)

    def clear_output(self) -> None:
        """Drop queued output audio (barge-in); socket transports also tell the far end."""
        self.messages.clear()

    def subscribe(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Also hand every message to ``listener`` (a signaling socket), then the close."""
        self.messages.subscribe(listener)

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
        self.spawn(self.record.save_inputs(self.inputs), "save-inputs")

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

    def counters(self) -> dict[str, int]:
        return {
            "frames_in": self.pipelines.frames_in,
            "frames_out": self.pipelines.frames_out,
            "messages_out": self.messages.sent,
            "stuck_calls": self.calls.stuck(),
            **(self.handler.session_counters() if self.handler is not None else {}),
        }

    def record_fields(self) -> dict[str, Any]:
        """What the heartbeat writes to the record (see ``SessionRecord.beat_fields``)."""
        return self.record.beat_fields(self.counters(), self.inputs)

    def _signal(self, signal: Any, **kwargs: Any) -> None:
        signals.send_soon(signal, self.stream, self.loop, webrtc_id=self.webrtc_id, **kwargs)

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
        self.messages.closing(reason)
        await self._cancel_tasks([t for t in self._tasks if t is not asyncio.current_task()])
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
        self.calls.session_ended()
        await self.transport.close()
        self.manager.forget(self)
        if (
            self.admitted or await self._admitted_after_all()
        ):  # else refused at admission: no record, nobody subscribed
            await self._write_close(reason, state)

    async def _cancel_tasks(self, tasks: list[asyncio.Task[Any]]) -> None:
        """Cancel the session's tasks and wait for them, cancelling again those that go on.

        Handler code may swallow a cancellation without meaning to: on Python 3.11,
        ``asyncio.wait_for`` returns the result instead of raising when the result arrives
        together with the cancellation, so an ``emit`` written the FastRTC way
        (``await asyncio.wait_for(queue.get(), t)``) sometimes returns, its pipeline calls
        it again, and the close waited for ever: the session, its record and its client's
        ASGI call stayed live until the worker was killed (8 of 32 sessions, an async echo
        over the audio WebSocket). Tasks get ``CANCEL_GRACE`` to finish as they like, then
        are cancelled again every ``RECANCEL_EVERY`` up to ``CANCEL_LIMIT``; any still
        running then are left behind, logged, and the session closes anyway."""
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        loop = asyncio.get_running_loop()
        _, pending = await asyncio.wait(tasks, timeout=CANCEL_GRACE)
        deadline = loop.time() + CANCEL_LIMIT - CANCEL_GRACE
        while pending and loop.time() < deadline:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=RECANCEL_EVERY)
        if pending:
            logger.warning(
                "Session %s/%s: %s still running %.0f s after being cancelled; closing anyway",
                self.stream.name,
                self.webrtc_id,
                ", ".join(sorted(t.get_name() for t in pending)),
                CANCEL_LIMIT,
            )

    async def _admitted_after_all(self) -> bool:
        """Closed while its admission still ran (ICE failed mid-offer): if the record
        was written, it must be closed too."""
        if self.admission is not None:
            with contextlib.suppress(Exception):
                await self.admission
                self.admitted = True
        return self.admitted

    async def _write_close(self, reason: str, state: str) -> None:
        await self.calls.let_finish()
        counters = self.counters()
        try:
            if await self.record.close(
                state, reason, counters, self.manager.unsaved_closes.__setitem__
            ):
                self._signal(
                    signals.session_ended,
                    channel=self.channel,
                    record_id=self.record_id,
                    reason=reason,
                    state=state,
                    counters=counters,
                )
        finally:
            await outputs.publish_end(self.webrtc_id)  # never raises: the record tells too
