"""Signals about sessions, sent on the worker that owns the session.

Connect receivers as with any Django signal; ``sender`` is the ``Stream``, so
``@receiver(session_ended, sender=my_stream)`` hears one stream only. They are
sent with ``Signal.asend_robust`` from a task of their own: async receivers
run on the session's event loop, sync ones in a thread (they may use the ORM),
a receiver that raises is logged and harms neither the session nor the other
receivers, and no receiver delays the media.

- ``session_started(sender, stream, webrtc_id, channel, record_id, user_id)``:
  the session was admitted and its handler is starting (``channel`` is
  ``"webrtc"``, ``"websocket"`` or ``"phone"``).
- ``session_ended(sender, stream, webrtc_id, channel, record_id, reason, state,
  counters)``: the session closed and its record says so; ``reason`` is the
  close reason (``"client_hangup"``, ``"time_limit"``, ``"handler_error:
  ValueError"``...), ``state`` ``"closed"`` or ``"failed"``, ``counters`` the
  frame and message counts.
- ``inputs_changed(sender, stream, webrtc_id, record_id, inputs, previous)``: new
  input values reached the session (lists in ``additional_inputs`` order).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Any

from django.dispatch import Signal

from django_rtcstream import background

__all__ = ["inputs_changed", "session_ended", "session_started"]

logger = logging.getLogger(__name__)

session_started = Signal()
session_ended = Signal()
inputs_changed = Signal()


async def send(signal: Signal, stream: Any, **kwargs: Any) -> None:
    """Send ``signal`` for ``stream``; failures of receivers are logged, never raised."""
    if not signal.has_listeners(stream):
        return
    for receiver, result in await signal.asend_robust(sender=stream, stream=stream, **kwargs):
        if isinstance(result, Exception):
            logger.error(
                "A %s receiver (%r) raised for session %s",
                _name(signal),
                receiver,
                kwargs.get("webrtc_id"),
                exc_info=result,
            )


def _name(signal: Signal) -> str:
    for name in __all__:
        if globals()[name] is signal:
            return name
    return "signal"


def send_soon(signal: Signal, stream: Any, loop: asyncio.AbstractEventLoop, **kwargs: Any) -> None:
    """Send ``signal`` for a session without waiting (nothing is started if nobody listens).

    In a fresh context: the caller's may be a request's ``async_to_sync``, whose
    thread executor is gone by the time a sync receiver would run in it.
    """
    if signal.has_listeners(stream):
        background.start(
            send(signal, stream, **kwargs),
            "signal",
            webrtc_id=kwargs.get("webrtc_id"),
            loop=loop,
            context=contextvars.Context(),
        )
