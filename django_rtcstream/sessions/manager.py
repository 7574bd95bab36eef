"""The sessions of this worker process: admission, the handler pool, the heartbeat.

``manager()`` is this process's ``SessionManager``, created on first use. It
admits sessions (limits, duplicates: a database transaction, run while aiortc
negotiates), keeps them in the process-local table (``sessions.table``), runs
the handler pool they share, and heartbeats: keeping this worker's leases
fresh, writing what the sessions could not while the database was away, and
reaping the sessions of workers that stopped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from typing import TYPE_CHECKING, Any

from django_rtcstream import background, metrics
from django_rtcstream.conf import rtc_settings
from django_rtcstream.errors import ErrorCode
from django_rtcstream.exceptions import DatabaseUnavailable, SignalingError
from django_rtcstream.media import ice, jitter
from django_rtcstream.models import SessionState
from django_rtcstream.sessions import bus, drain, memory, outputs, records, table
from django_rtcstream.sessions.pool import HandlerPool
from django_rtcstream.sessions.record import Closed
from django_rtcstream.sessions.runtime import Session
from django_rtcstream.tokens import new_token

if TYPE_CHECKING:
    from django_rtcstream.stream import Stream

logger = logging.getLogger(__name__)


class SessionManager:
    """The sessions of this worker process, and its handler thread pool."""

    def __init__(self) -> None:
        self.sessions = table.sessions
        # record id -> mark_closed's arguments, for sessions that closed while the
        # database was away: the heartbeat writes them.
        self.unsaved_closes: dict[Any, Closed] = {}
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
            metrics.session_gone(session)  # the session's last frames
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
        if stream.modality != "audio":  # sockets and phones carry audio only
            raise SignalingError(
                ErrorCode.UNSUPPORTED_MODALITY,
                f"Stream {stream.name!r} is {stream.modality}; audio over WebSocket "
                "and telephone need an audio stream.",
            )
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
        drain.check_admitting(stream)  # 503 draining while the worker drains
        self.loop_thread = threading.get_ident()
        self._ensure_heartbeat()
        if webrtc_id in self.sessions:  # the database would refuse it too; save the trip
            raise SignalingError(
                ErrorCode.CONNECTION_ALREADY_EXISTS,
                f"A live session with webrtc_id {webrtc_id!r} already exists.",
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
        admission = records.admit(
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
        return metrics.admission(stream, admission)  # admissions refused, by reason

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
                ErrorCode.CONNECTION_CLOSED,
                "The connection ended while the offer was being answered.",
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
        unsaved = {rid: set(s.record.unsaved) for rid, s in running.items()}
        lost = await records.heartbeat({rid: s.record_fields() for rid, s in running.items()})
        for record_id, session in running.items():
            session.record.unsaved -= unsaved[record_id]
        for record_id in lost:
            await self._reclaim(running[record_id])
        lease = rtc_settings.SESSION_LEASE
        if records.reachable_for() < lease:
            return
        for webrtc_id in await records.reap(lease, keep=self.own_records()):
            logger.warning("Reaped session %s: its worker stopped heartbeating", webrtc_id)
            background.start(outputs.publish_end(webrtc_id), "end marker", webrtc_id=webrtc_id)

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
    return table.get(webrtc_id)


def manager() -> SessionManager:
    """This process's session manager, created on first use."""
    global _manager
    if _manager is None:
        with _manager_lock:
            if _manager is None:
                _manager = SessionManager()
    return _manager
