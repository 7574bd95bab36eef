"""What a handler reaches of its session while it is being called: who it is serving
(``get_current_context``) and a way to tell the client (``send_message``, ``warn``,
``log``), through the ``SessionPort`` the runtime sets for each handler call."""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Context:
    """What a handler may know about the call it is in.

    ``websocket`` is FastRTC's field: for a session carried by a WebSocket
    (FastRTC's audio protocol or a phone call) it is the Channels consumer of
    that socket (``send_json``, ``scope``), for WebRTC sessions None.
    """

    webrtc_id: str
    stream_name: str = ""
    websocket: Any = None


class SessionPort:
    """What the runtime gives a handler copy: a way back to its session.

    The runtime subclasses this; a handler talks to it only through the
    methods of :class:`StreamHandlerBase`.
    """

    loop: asyncio.AbstractEventLoop

    def send_message(self, message: dict[str, Any]) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def clear_output(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def ended(self) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def output_queued_seconds(self) -> float:
        """Seconds of output audio queued and not yet played (0 without an audio output).

        Turn-taking reads it to know when a reply has finished *playing*, not
        just generating (every transport plays this queue at real time).
        """
        out = getattr(getattr(self, "pipelines", None), "audio_out", None)  # the session's
        return float(out.buffered_seconds) if out is not None else 0.0


_current_context: contextvars.ContextVar[Context] = contextvars.ContextVar(
    "django_rtcstream_context"
)


def get_current_context() -> Context:
    """The session a handler is being called for.

    Raises:
        RuntimeError: when called outside a handler call.
    """
    try:
        return _current_context.get()
    except LookupError:
        raise RuntimeError("get_current_context() called outside a stream handler") from None


_current_port: contextvars.ContextVar[SessionPort] = contextvars.ContextVar("django_rtcstream_port")


def send_message(msg_type: str, data: Any = None) -> None:
    """Send ``{"type": msg_type, "data": data}`` to the client of the current session.

    Works in any handler kind (function or class, sync or async), from the
    handler's own thread; outside a handler it raises RuntimeError.
    """
    try:
        port = _current_port.get()
    except LookupError:
        raise RuntimeError("send_message() called outside a stream handler") from None
    port.send_message({"type": msg_type, "data": data})


def warn(message: str = "Warning issued.") -> None:
    """Send a ``warning`` message to the client (FastRTC's ``Warning()``).

    The message goes as ``data`` and, for FastRTC's pages, as ``message`` too.
    """
    try:
        port = _current_port.get()
    except LookupError:
        raise RuntimeError("warn() called outside a stream handler") from None
    port.send_message({"type": "warning", "data": message, "message": message})


Warning = warn  # FastRTC's name for it (it shadows the builtin on purpose)


def log(message: str) -> None:
    """Send a ``log`` message to the client."""
    send_message("log", message)
