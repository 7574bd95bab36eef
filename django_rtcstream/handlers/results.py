"""What a handler returns besides media: extra outputs, the end of the session, an
error for the user; and FastRTC's names for what an emit() may return."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

AudioChunk = tuple[int, "np.ndarray"] | tuple[int, "np.ndarray", str]
# FastRTC's names for what an audio emit()/generator and a video handler may return.
AudioEmitType = Union[
    AudioChunk, "AdditionalOutputs", tuple[AudioChunk, "AdditionalOutputs"], "CloseStream", None
]
VideoEmitType = Union[
    "np.ndarray",
    tuple["np.ndarray", "AdditionalOutputs"],
    tuple["np.ndarray", "CloseStream"],
    "AdditionalOutputs",
    "CloseStream",
]


class AdditionalOutputs:
    """Extra results of a handler call, delivered to output hooks.

    Return or yield it (alone, or as ``(media, AdditionalOutputs(...))``). The
    client is told with a ``fetch_output`` message; ``stream.output_stream()``
    and the SSE output hook yield it.
    """

    def __init__(self, *args: Any) -> None:
        self.args = args

    def __repr__(self) -> str:
        return f"AdditionalOutputs{self.args!r}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AdditionalOutputs) and _safe_eq(self.args, other.args)


def _safe_eq(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except ValueError:  # numpy arrays compare element-wise
        return a is b


class CloseStream:
    """Return or yield it to end the session from the server side.

    The client gets ``{"type": "end_stream", "data": msg}`` and the session
    closes with reason ``"closed_by_handler"``.
    """

    def __init__(self, msg: str = "Stream closed") -> None:
        self.msg = msg

    def __repr__(self) -> str:
        return f"CloseStream({self.msg!r})"


class WebRTCError(Exception):
    """Raise it in a handler to end the session with a message for the user.

    The client gets ``{"type": "error", "data": message, "message": message}``
    (FastRTC's pages read ``message``, this app's ``data``) and the session
    closes as failed, like any handler error, but without the exception's type
    in front of the text. Unlike FastRTC's, constructing one sends nothing: only
    raising it out of a handler does, once.
    """

    def __init__(self, message: str = "An error occurred.") -> None:
        super().__init__(message)
        self.message = message
