"""WebSocket signaling: ``ws/<prefix>/<stream>/``.

Client to server (JSON): ``{"type": "offer", "sdp", "webrtc_id"?}``,
``{"type": "ice-candidate", "candidate": {...} | null}``, ``{"type": "close"}``.
Server to client: ``{"type": "answer", "sdp", "webrtc_id"}``, the server's
``ice-candidate`` messages (then ``candidate: null``), every session message
(``fetch_output``, ``send_input``, ``error``, ``warning``, ``log``,
``end_stream``, ``connection``), ``{"type": "closed", "data": reason}``, and
``{"type": "failed", "status": "failed", "meta": {...}}`` for refusals.
The session lives as long as the socket: closing the socket hangs up.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from django_rtcstream import registry
from django_rtcstream.access import Requester
from django_rtcstream.conf import rtc_settings
from django_rtcstream.errors import ErrorCode
from django_rtcstream.exceptions import SignalingError, StreamNotFound
from django_rtcstream.signaling.messages import offer_fields, parse_json

logger = logging.getLogger(__name__)


class SignalingConsumer(AsyncWebsocketConsumer):
    """Offer/answer and trickle ICE for one session over one WebSocket."""

    session: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Channels' consumer loop, and the session closed however it ends (a handler
        that raises, e.g. answering a ``ping`` sent after ``close``, ends the loop without
        ``disconnect()``: the session lived on until ICE gave up)."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.session is not None:
                await self.disconnect(1006)

    async def connect(self) -> None:
        name = self.scope["url_route"]["kwargs"]["stream"]
        await self.accept()
        try:
            self.stream = registry.get_stream(name)
        except StreamNotFound as exc:
            await self.send_failure(exc)
            await self.close(code=exc.close_code)

    async def send_json(self, data: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(data, default=str))

    async def send_failure(self, exc: SignalingError) -> None:
        await self.send_json({"type": "failed", **exc.body()})

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            data = parse_json(text_data or bytes_data or b"", rtc_settings.MAX_SIGNALING_BYTES)
            kind = data.get("type")
            if kind == "offer":
                await self.on_offer(data)
            elif kind == "ice-candidate":
                if self.session is None:
                    raise SignalingError(ErrorCode.UNKNOWN_CONNECTION, "Send an offer first.")
                from django_rtcstream.media.ice import parse_candidate

                parse_candidate(data.get("candidate"))
                await self.session.add_candidate(data.get("candidate"))
            elif kind == "close":
                await self.close()
            elif kind == "ping":
                await self.send_json({"type": "pong", "data": data.get("data")})
            else:
                raise SignalingError(
                    ErrorCode.INVALID_REQUEST,
                    "'type' must be 'offer', 'ice-candidate', 'close' or 'ping'.",
                )
        except SignalingError as exc:
            await self.send_failure(exc)

    async def on_offer(self, data: dict[str, Any]) -> None:
        from django_rtcstream.sessions.manager import manager

        if self.session is not None:
            raise SignalingError(
                ErrorCode.CONNECTION_ALREADY_EXISTS, "This socket already carries a session."
            )
        sdp, webrtc_id = offer_fields(data)
        from django_rtcstream.api import permissions

        requester = Requester.from_scope(self.scope)
        await permissions.acheck("open", requester, self.stream)
        session, answer = await manager().open_webrtc(
            self.stream,
            webrtc_id,
            sdp,
            client_address=requester.address,
            user_id=await requester.user_id(),
        )
        self.session = session
        session.subscribe(self.on_session_message)
        await self.send_json(
            {"type": "answer", "sdp": answer, "webrtc_id": webrtc_id, "token": session.token}
        )
        for candidate in session.transport.local_candidates():
            await self.send_json({"type": "ice-candidate", "candidate": candidate})
        await self.send_json({"type": "ice-candidate", "candidate": None})

    def on_session_message(self, message: dict[str, Any]) -> None:
        """Session messages, in order, through one writer task per socket."""
        if getattr(self, "_outbox", None) is None:
            import asyncio

            self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=256)
            from django_rtcstream import background

            self._writer = background.start(
                self._write(),
                "signaling writer",
                webrtc_id=getattr(self.session, "webrtc_id", None),
            )
        if self._outbox.full():  # a client that does not read loses old messages, not memory
            self._outbox.get_nowait()
        self._outbox.put_nowait(message)

    async def _write(self) -> None:
        while True:
            message = await self._outbox.get()
            try:
                await self.send_json(message)
                if message["type"] == "closed":
                    await self.close()
                    return
            except Exception:  # the socket is already gone
                return

    async def disconnect(self, code: int) -> None:
        if self.session is not None:
            session, self.session = self.session, None
            await session.close("client_disconnected")
