"""The handler classes (FastRTC's ``StreamHandler`` family) and what ``Stream`` takes as
a handler: their state (sample rates, inputs, the port to the session), the inputs'
``ArgsSet`` and ``handler.channel``."""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import warnings
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import EllipsisType
from typing import TYPE_CHECKING, Any, Literal, Protocol

from django_rtcstream.handlers.results import AudioEmitType, VideoEmitType
from django_rtcstream.handlers.session import SessionPort

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


@dataclass
class VideoStreamHandler:
    """A video function with its own options (FastRTC compatible).

    ``fps`` paces receive-mode generators. ``skip_frames`` is FastRTC's: False
    (its default) hands the function every frame in order, so a slow function
    falls behind (here at most one second of frames is kept; older ones are
    dropped); True hands it the newest frame only. A plain function, without
    this wrapper, always gets the newest frame: latency never builds up.
    """

    callable: Callable[..., Any]
    fps: int = 30
    skip_frames: bool = False


class ArgsSet:
    """FastRTC's ``args_set``: set when the client's input values have arrived.

    Cleared by ``reset()``. It works from the event loop (``await wait()``) and
    from handler threads (``wait_sync()``), which FastRTC's asyncio.Event does not.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._set = False

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        with self._cond:
            self._set = True
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._set = False

    def wake(self) -> None:
        """Wake every waiter without setting (the session ended)."""
        with self._cond:
            self._cond.notify_all()

    def wait_sync(
        self, timeout: float | None = None, give_up: Callable[[], bool] = lambda: False
    ) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._set or give_up(), timeout) and self._set

    async def wait(self) -> bool:
        return await asyncio.to_thread(self.wait_sync, None)


class TextChannel(Protocol):
    """What :attr:`StreamHandlerBase.channel` is: anything with ``send(text)``
    (aiortc's data channel, or this app's stand-in for a WebSocket)."""

    def send(self, data: str) -> None: ...


class _Channel:
    """``handler.channel``: what FastRTC handlers call ``.send(text)`` on.

    A JSON object is sent as the message it is; any other text as a ``log``.
    """

    def __init__(self, port: SessionPort) -> None:
        self._port = port

    @property
    def readyState(self) -> str:  # aiortc's name
        return "closed" if self._port.ended else "open"

    def send(self, data: str) -> None:
        try:
            message = json.loads(data)
        except (TypeError, ValueError):
            message = None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            message = {"type": "log", "data": data}
        self._port.send_message(message)


class StreamHandlerBase(ABC):
    """Common state of class handlers: sample rates, inputs and a port to the session.

    ``latest_args`` keeps FastRTC's layout (a placeholder at index 0, the
    additional inputs after it) so FastRTC handlers that index into it keep
    working; new code should read :attr:`inputs`.
    """

    def __init__(
        self,
        expected_layout: Literal["mono", "stereo"] = "mono",
        output_sample_rate: int = 24000,
        output_frame_size: int | None = None,
        input_sample_rate: int = 48000,
        fps: int = 30,
    ) -> None:
        if expected_layout not in ("mono", "stereo"):
            raise ValueError("expected_layout must be 'mono' or 'stereo'")
        if output_sample_rate <= 0 or output_sample_rate % 50:
            raise ValueError(
                f"output_sample_rate must be a positive multiple of 50 (20 ms frames), "
                f"got {output_sample_rate}"
            )
        frame_size = output_sample_rate // 50
        if output_frame_size is not None and output_frame_size != frame_size:
            warnings.warn(
                "output_frame_size is ignored: output frames are always 20 ms "
                f"({frame_size} samples at {output_sample_rate} Hz)",
                UserWarning,
                stacklevel=2,
            )
        self.expected_layout = expected_layout
        self.output_sample_rate = output_sample_rate
        self.output_frame_size = frame_size
        self.input_sample_rate = input_sample_rate
        self.fps = fps
        self.phone_mode = False
        self.latest_args: list[Any] = ["__webrtc_value__"]
        self.args_set = ArgsSet()
        self._port: SessionPort | None = None
        self._channel: TextChannel | None = None

    # -- inputs -----------------------------------------------------------------

    @property
    def inputs(self) -> list[Any]:
        """The current values of the stream's additional inputs, in declaration order."""
        return list(self.latest_args[1:])

    def set_args(self, args: list[Any]) -> None:
        """Called by the runtime when the client sends input values (sets ``args_set``)."""
        if not isinstance(args, list):
            raise TypeError("args must be a list")
        self.latest_args = ["__webrtc_value__", *args]
        self.args_set.set()

    def fetch_args(self) -> None:
        """Ask the client for fresh input values (a ``send_input`` message)."""
        self.send_message_sync({"type": "send_input", "data": []})

    async def wait_for_args(self, timeout: float | EllipsisType | None = ...) -> bool:
        """Ask the client for its inputs and wait until they have arrived.

        As in FastRTC this returns at once when inputs arrived since the last
        ``reset()`` (``args_set`` is set) and in phone mode. Unlike FastRTC it
        gives up: after ``timeout`` seconds (default: the
        ``WAIT_FOR_ARGS_TIMEOUT`` setting, 10; None waits for ever) or when the
        session ends, returning False; the current values stay in ``latest_args``.
        """
        return await asyncio.to_thread(self.wait_for_args_sync, timeout)

    def wait_for_args_sync(self, timeout: float | EllipsisType | None = ...) -> bool:
        """Blocking twin of :meth:`wait_for_args`, for sync handlers."""
        if self.phone_mode:
            self.args_set.set()
            return True
        if self.args_set.is_set():
            return True
        if timeout is ...:
            timeout = _wait_for_args_timeout()
        self.fetch_args()
        port = self._port
        return self.args_set.wait_sync(timeout, lambda: port is not None and port.ended)

    # -- talking to the client --------------------------------------------------

    def send_message_sync(self, msg: dict[str, Any] | str) -> None:
        """Send a message to the client (data channel or WebSocket); safe from any thread."""
        if self._port is None:
            return
        message = msg if isinstance(msg, dict) else {"type": "log", "data": msg}
        self._port.send_message(message)

    async def send_message(self, msg: dict[str, Any] | str) -> None:
        """Async twin of :meth:`send_message_sync`."""
        self.send_message_sync(msg)

    def clear_queue(self) -> None:
        """Drop output audio that is queued but not yet played (barge-in)."""
        if self._port is not None:
            self._port.clear_output()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the session runs on."""
        return self._port.loop if self._port is not None else None

    @property
    def channel(self) -> TextChannel | None:
        """FastRTC's data channel: an object with ``send(text)`` to the client
        (the data channel or the WebSocket), or None outside a session."""
        if self._channel is not None:
            return self._channel
        return _Channel(self._port) if self._port is not None else None

    def set_channel(self, channel: TextChannel) -> None:
        """FastRTC's hook: use ``channel`` (anything with ``send(text)``) as :attr:`channel`."""
        self._channel = channel

    def _attach(self, port: SessionPort) -> None:
        self._port = port

    # -- lifecycle --------------------------------------------------------------

    def start_up(self) -> Awaitable[None] | None:  # noqa: B027  (optional hook, overridden when needed)
        """Called once per session before media flows. May be async on async handlers."""

    def shutdown(self) -> Awaitable[None] | None:  # noqa: B027  (optional hook, overridden when needed)
        """Called once when the session ends, whatever ended it."""

    def reset(self) -> None:
        """Called when the session ends, after :meth:`shutdown`; clears ``args_set``."""
        self.args_set.clear()

    def session_counters(self) -> dict[str, int]:
        """Counters stored on the session's record with its frame counts
        (``ReplyOnPause``: ``turns``, ``interruptions``); none by default."""
        return {}

    @abstractmethod
    def copy(self) -> StreamHandlerBase:
        """Return a fresh handler for one session; called once per session."""


class StreamHandler(StreamHandlerBase):
    """A sync audio handler: ``receive`` gets input audio, ``emit`` returns output.

    Both run in the runtime's bounded thread pool, never on the event loop.
    ``emit`` may block briefly (e.g. ``queue.get(timeout=0.1)``) or return None
    for "nothing yet".
    """

    @abstractmethod
    def receive(self, frame: tuple[int, np.ndarray]) -> None:
        """Called with ``(sample_rate, int16 array of shape (1, n))`` for each input frame."""

    @abstractmethod
    def emit(self) -> AudioEmitType:
        """Return ``(sample_rate, array)``, ``AdditionalOutputs``, both in a tuple,
        ``CloseStream`` or None."""


class AsyncStreamHandler(StreamHandlerBase):
    """The async twin of :class:`StreamHandler`; its methods run on the event loop."""

    @abstractmethod
    async def receive(self, frame: tuple[int, np.ndarray]) -> None:
        """See :meth:`StreamHandler.receive`."""

    @abstractmethod
    async def emit(self) -> AudioEmitType:
        """See :meth:`StreamHandler.emit`."""


class AudioVideoStreamHandler(StreamHandler):
    """Audio and video in one sync handler (``audio-video`` modality)."""

    @abstractmethod
    def video_receive(self, frame: np.ndarray) -> None:
        """Called with the latest input video frame (HxWx3 uint8)."""

    @abstractmethod
    def video_emit(self) -> VideoEmitType | None:
        """Return the next output video frame (HxWx3 uint8), optionally with
        ``AdditionalOutputs``, or None to repeat the previous frame."""


class AsyncAudioVideoStreamHandler(AsyncStreamHandler):
    """The async twin of :class:`AudioVideoStreamHandler`."""

    @abstractmethod
    async def video_receive(self, frame: np.ndarray) -> None:
        """See :meth:`AudioVideoStreamHandler.video_receive`."""

    @abstractmethod
    async def video_emit(self) -> VideoEmitType | None:
        """See :meth:`AudioVideoStreamHandler.video_emit`."""


def _wait_for_args_timeout() -> float | None:
    try:
        from django_rtcstream.conf import rtc_settings

        return rtc_settings.WAIT_FOR_ARGS_TIMEOUT
    except Exception:  # Django not configured: a handler tested on its own
        return 10.0


def is_async_handler(handler: StreamHandlerBase) -> bool:
    """Whether the handler's methods are coroutines (run on the loop) or sync (run in the pool)."""
    return isinstance(handler, AsyncStreamHandler) or inspect.iscoroutinefunction(
        getattr(handler, "emit", None)
    )


#: What ``Stream(handler=...)`` takes: a handler instance (copied for each session), a
#: ``VideoStreamHandler``, or a function or generator function (see the README's table).
Handler = StreamHandlerBase | VideoStreamHandler | Callable[..., Any]
