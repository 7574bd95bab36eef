"""Errors of django-rtcstream.

Each signaling failure carries the stable ``code`` that goes into the
FastRTC-compatible failure body ``{"status": "failed", "meta": {"error": code}}``
and the HTTP status the views answer with; both, and the WebSocket close code,
come from the one table in ``django_rtcstream.errors``.
"""

from __future__ import annotations

from typing import Any

from django_rtcstream.errors import ErrorCode, close_code, failure_body, lookup


class RtcStreamError(Exception):
    """Base class of every error raised by django-rtcstream."""


class SignalingError(RtcStreamError):
    """A refused signaling request: a stable ``code``, an HTTP ``status`` and a message.

    ``status`` defaults to the code's status in ``errors.ERRORS`` (400 for a code
    outside it); ``close_code`` is the 4xxx code a WebSocket refused with it closes with.
    """

    def __init__(
        self, code: ErrorCode | str, message: str, status: int | None = None, **meta: Any
    ) -> None:
        known = lookup(code)
        self.code: str = known.value if known is not None else str(code)
        self.status: int = status if status is not None else (known.status if known else 400)
        self.meta = meta
        super().__init__(message)

    @property
    def close_code(self) -> int:
        return close_code(self.code)

    def body(self) -> dict[str, Any]:
        """The FastRTC-compatible failure body, with a human ``message`` added."""
        return failure_body(self.code, str(self), **self.meta)


class StreamNotFound(SignalingError, LookupError):
    """Raised when a stream name is not registered in ``RTCSTREAM["STREAMS"]``.

    It is the refusal itself (``unknown_stream``, 404, close 4404): a view or consumer
    that looks a stream up answers it as it answers any ``SignalingError``.
    """

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.UNKNOWN_STREAM, message)


class InvalidInput(RtcStreamError, ValueError):
    """Raised when values given for a stream's additional inputs fail validation.

    ``errors`` maps an input's name (or index) to a list of messages.
    """

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))

    def body(self) -> dict[str, Any]:
        """The failure body (``invalid_input``, 400) with the messages per input."""
        return {**failure_body(ErrorCode.INVALID_INPUT, str(self)), "errors": self.errors}


class UnknownSession(SignalingError):
    """Raised when a session id names no session that is alive on any worker."""

    def __init__(self, webrtc_id: str) -> None:
        super().__init__(
            ErrorCode.UNKNOWN_CONNECTION, f"No live session with webrtc_id {webrtc_id!r}."
        )


class BrokerUnavailable(SignalingError):
    """Raised when the channel layer (the message broker, e.g. Redis) cannot be reached
    in time, so a request cannot reach a session on another worker.

    Views answer 503 with ``Retry-After: <retry_after>``; the session itself is not
    harmed, and the same request works again once the broker is back.
    """

    retry_after = 2  # seconds, for the Retry-After header

    def __init__(self, what: str) -> None:
        super().__init__(
            ErrorCode.BROKER_UNAVAILABLE,
            f"The channel layer (the message broker) cannot be reached, so {what} is not "
            f"possible right now; try again in a few seconds.",
        )


class DatabaseUnavailable(SignalingError):
    """Raised when the database of the session records cannot be reached (it is down,
    restarting, or cut off from this worker), so a session cannot be admitted or looked up.

    Views answer 503 with ``Retry-After: <retry_after>``; running sessions are not
    harmed (their records catch up once the database is back), and the same request
    works again then.
    """

    retry_after = 2  # seconds, for the Retry-After header

    def __init__(self, what: str = "this request") -> None:
        super().__init__(
            ErrorCode.DATABASE_UNAVAILABLE,
            f"The database of the session records cannot be reached, so {what} is not "
            f"possible right now; try again in a few seconds.",
        )


class WorkerDraining(SignalingError):
    """Raised when a session is offered to a worker that is draining (it was sent SIGTERM,
    or ``manage.py rtcstream_drain``): it finishes its sessions and takes no new ones.

    Views answer 503 with ``Retry-After: <retry_after>``; any other worker (the load
    balancer's next choice) takes the same offer.
    """

    retry_after = 1  # seconds, for the Retry-After header

    def __init__(self) -> None:
        super().__init__(
            ErrorCode.DRAINING,
            "This worker is shutting down and takes no new sessions: send the offer again "
            "(another worker will answer it).",
        )
