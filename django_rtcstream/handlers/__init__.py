"""Handler base classes and the values handlers return.

These keep FastRTC's names and meaning (``receive``/``emit``/``copy``,
``start_up``/``shutdown``, ``latest_args``...) so FastRTC handlers run
unchanged. What differs is what a port must fix: inputs arrive the same way
for every handler kind, ``wait_for_args`` has a timeout, and ``shutdown`` is
always called by the runtime.

Nothing here imports Django, aiortc or av: a handler module can be imported
(and unit-tested) anywhere. The package's modules: ``results`` (what a handler
returns), ``session`` (what it reaches of its session during a call), ``classes``
(the handler classes); every name is importable from ``django_rtcstream.handlers``.
"""

from __future__ import annotations

from django_rtcstream.handlers.classes import (
    ArgsSet as ArgsSet,
    AsyncAudioVideoStreamHandler as AsyncAudioVideoStreamHandler,
    AsyncStreamHandler as AsyncStreamHandler,
    AudioVideoStreamHandler as AudioVideoStreamHandler,
    Handler as Handler,
    StreamHandler as StreamHandler,
    StreamHandlerBase as StreamHandlerBase,
    TextChannel as TextChannel,
    VideoStreamHandler as VideoStreamHandler,
    is_async_handler as is_async_handler,
)
from django_rtcstream.handlers.results import (
    AdditionalOutputs as AdditionalOutputs,
    AudioChunk as AudioChunk,
    AudioEmitType as AudioEmitType,
    CloseStream as CloseStream,
    VideoEmitType as VideoEmitType,
    WebRTCError as WebRTCError,
)
from django_rtcstream.handlers.session import (
    Context as Context,
    SessionPort as SessionPort,
    Warning as Warning,
    _current_context as _current_context,  # the runtime sets them for each call
    _current_port as _current_port,
    get_current_context as get_current_context,
    log as log,
    send_message as send_message,
    warn as warn,
)

__all__ = [
    "AdditionalOutputs",
    "AsyncAudioVideoStreamHandler",
    "AsyncStreamHandler",
    "AudioEmitType",
    "AudioVideoStreamHandler",
    "CloseStream",
    "Context",
    "Handler",
    "StreamHandler",
    "StreamHandlerBase",
    "TextChannel",
    "VideoEmitType",
    "VideoStreamHandler",
    "Warning",
    "WebRTCError",
    "get_current_context",
    "log",
    "send_message",
    "warn",
]
