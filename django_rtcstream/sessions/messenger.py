"""A session's messages to its client: through its transport, to its subscribers.

Handler code sends messages from any thread (``send_message``, ``warn``,
``clear_queue``); they are delivered on the session's loop, in order, counted
for the record, and never after the session has closed. Subscribers are
signaling sockets that forward them (and the close) to their client.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

from django_rtcstream.handlers import WebRTCError
from django_rtcstream.media.pipelines import Pipelines
from django_rtcstream.sessions.transport import Transport

logger = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], None]


class MessengerHost(Protocol):
    loop: asyncio.AbstractEventLoop
    transport: Transport
    pipelines: Pipelines
    closed: asyncio.Event

    def on_loop_thread(self) -> bool: ...


class Messenger:
    """The outgoing messages of one session."""

    def __init__(self, host: MessengerHost) -> None:
        self.host = host
        self.listeners: list[Listener] = []
        self.sent = 0

    def subscribe(self, listener: Listener) -> None:
        """Also hand every message to ``listener``, then ``{"type": "closed"}``."""
        self.listeners.append(listener)

    def send(self, message: dict[str, Any]) -> None:
        """Thread-safe: deliver a ``{"type", "data"}`` message to the client."""
        self._soon(self._send_now, message)

    def clear(self) -> None:
        """Thread-safe: drop queued output audio; socket transports tell the far end too."""
        self._soon(self._clear_now)

    def closing(self, reason: str) -> None:
        """The session begins to close: the transport and the subscribers learn why."""
        self.host.transport.closing(reason)
        for listener in list(self.listeners):
            listener({"type": "closed", "data": reason})

    def report_failure(self, exc: BaseException, session: str) -> None:
        """Tell the client why its session fails, and log it (``session``: stream/id)."""
        if isinstance(exc, WebRTCError):  # meant for the user: their words, no traceback
            logger.warning("Session %s ended by WebRTCError: %s", session, exc.message)
            self.send({"type": "error", "data": exc.message, "message": exc.message})
        else:
            logger.error("Handler error in session %s", session, exc_info=exc)
            self.send({"type": "error", "data": f"{type(exc).__name__}: {exc}"})

    def _soon(self, fn: Callable[..., None], *args: Any) -> None:
        if self.host.on_loop_thread():
            fn(*args)
        else:
            self.host.loop.call_soon_threadsafe(fn, *args)

    def _send_now(self, message: dict[str, Any]) -> None:
        if self.host.closed.is_set():
            return
        message.setdefault("data", None)
        self.sent += 1
        self.host.transport.send(message, json.dumps(message, default=str))
        for listener in list(self.listeners):
            listener(message)

    def _clear_now(self) -> None:
        audio_out = self.host.pipelines.audio_out
        if audio_out is not None:
            audio_out.clear()
        self.host.transport.clear()
