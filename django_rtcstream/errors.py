"""Every failure code of django-rtcstream, in one table.

A refused request answers ``{"status": "failed", "meta": {"error": code, "message":
...}}`` (FastRTC's failure body, with a message added) with an HTTP status; a refused
WebSocket sends the same body and closes with a 4xxx code. Clients branch on the code
(``rtcstream.js`` explains each in plain words), so codes are part of the wire
protocol: they are written here once, with their status, their close code and what
they mean, and the README's "Error codes" table is generated from this one
(``tests/test_errors.py`` fails when the two differ).

Close codes are 4000 + the HTTP status for the 4xx codes. The 5xx codes close with
4400, the close code every refusal of a socket's start had before the table existed
(only ``database_unavailable`` can refuse a start today); the wire keeps it.

This module imports nothing of Django, so every layer may use it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple


class ErrorSpec(NamedTuple):
    """What goes with a code: the HTTP status, the WebSocket close code, a meaning."""

    status: int
    close_code: int
    meaning: str


class ErrorCode(StrEnum):
    """A stable failure code: the ``meta.error`` of a failure body.

    A ``str``: it compares equal to, and serializes as, its value
    (``ErrorCode.UNKNOWN_STREAM == "unknown_stream"``).
    """

    INVALID_JSON = "invalid_json"
    INVALID_REQUEST = "invalid_request"
    INVALID_OFFER = "invalid_offer"
    INVALID_CANDIDATE = "invalid_candidate"
    INVALID_WEBRTC_ID = "invalid_webrtc_id"
    INVALID_START = "invalid_start"
    INVALID_INPUT = "invalid_input"
    UNSUPPORTED_TRACK = "unsupported_track"
    UNSUPPORTED_MODALITY = "unsupported_modality"
    TOO_MANY_FIELDS = "too_many_fields"
    TOO_MANY_FILES = "too_many_files"
    PERMISSION_DENIED = "permission_denied"
    INVALID_SIGNATURE = "invalid_signature"
    UNKNOWN_STREAM = "unknown_stream"
    UNKNOWN_CONNECTION = "unknown_connection"
    CONNECTION_ALREADY_EXISTS = "connection_already_exists"
    CONNECTION_CLOSED = "connection_closed"
    REQUEST_TOO_LARGE = "request_too_large"
    CONCURRENCY_LIMIT_REACHED = "concurrency_limit_reached"
    TOO_MANY_EARLY_CANDIDATES = "too_many_early_candidates"
    BROKER_UNAVAILABLE = "broker_unavailable"
    DATABASE_UNAVAILABLE = "database_unavailable"
    SESSION_UNREACHABLE = "session_unreachable"
    DRAINING = "draining"

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, format_spec: str) -> str:
        return format(str(self.value), format_spec)

    @property
    def spec(self) -> ErrorSpec:
        return ERRORS[self]

    @property
    def status(self) -> int:
        """The HTTP status a request refused with this code answers."""
        return ERRORS[self].status

    @property
    def close_code(self) -> int:
        """The WebSocket close code of a socket refused with this code."""
        return ERRORS[self].close_code

    @property
    def meaning(self) -> str:
        return ERRORS[self].meaning


_E = ErrorCode

#: The table: each code's HTTP status, WebSocket close code and meaning, in the order
#: of the README's table.
ERRORS: dict[ErrorCode, ErrorSpec] = {
    _E.INVALID_JSON: ErrorSpec(400, 4400, "The body or message is not a JSON object."),
    _E.INVALID_REQUEST: ErrorSpec(
        400, 4400, "A required field is missing, or the message `type` is unknown."
    ),
    _E.INVALID_OFFER: ErrorSpec(400, 4400, "The SDP offer is missing, unreadable or unanswerable."),
    _E.INVALID_CANDIDATE: ErrorSpec(
        400, 4400, "A trickled ICE candidate is missing or unreadable."
    ),
    _E.INVALID_WEBRTC_ID: ErrorSpec(
        400, 4400, "`webrtc_id` is not 1-64 letters, digits, `-` and `_`."
    ),
    _E.INVALID_START: ErrorSpec(
        400, 4400, "An audio socket's `start` has a bad `encoding` or sample rate."
    ),
    _E.INVALID_INPUT: ErrorSpec(
        400, 4400, "An input value was refused (`errors` holds a message per input)."
    ),
    _E.UNSUPPORTED_TRACK: ErrorSpec(400, 4400, "The offer carries media the stream does not take."),
    _E.UNSUPPORTED_MODALITY: ErrorSpec(
        400, 4400, "WebSocket audio or a phone call asked of a stream that is not audio."
    ),
    _E.TOO_MANY_FIELDS: ErrorSpec(
        400, 4400, "A form has more fields than `DATA_UPLOAD_MAX_NUMBER_FIELDS`."
    ),
    _E.TOO_MANY_FILES: ErrorSpec(
        400, 4400, "A form has more files than `DATA_UPLOAD_MAX_NUMBER_FILES`."
    ),
    _E.PERMISSION_DENIED: ErrorSpec(
        403,
        4403,
        "A permission class refused: send the session's token, sign in, or get a new SSE ticket.",
    ),
    _E.INVALID_SIGNATURE: ErrorSpec(
        403, 4403, "`X-Twilio-Signature` is missing or does not match `TWILIO_AUTH_TOKEN`."
    ),
    _E.UNKNOWN_STREAM: ErrorSpec(404, 4404, "No stream of that name is in `RTCSTREAM['STREAMS']`."),
    _E.UNKNOWN_CONNECTION: ErrorSpec(
        404, 4404, "No live session has that `webrtc_id` (or no offer was sent yet)."
    ),
    _E.CONNECTION_ALREADY_EXISTS: ErrorSpec(
        409, 4409, "A live session already has that `webrtc_id`, or the socket already carries one."
    ),
    _E.CONNECTION_CLOSED: ErrorSpec(409, 4409, "The session has ended."),
    _E.REQUEST_TOO_LARGE: ErrorSpec(
        413, 4413, "The body is over `MAX_SIGNALING_BYTES` or `DATA_UPLOAD_MAX_MEMORY_SIZE`."
    ),
    _E.CONCURRENCY_LIMIT_REACHED: ErrorSpec(
        429, 4429, "The stream has `concurrency_limit` live sessions (`meta.limit`); retry later."
    ),
    _E.TOO_MANY_EARLY_CANDIDATES: ErrorSpec(
        429, 4429, "Too many candidates wait for offers that have not come; send the offer first."
    ),
    _E.BROKER_UNAVAILABLE: ErrorSpec(
        503, 4400, "The channel layer (the broker) cannot be reached; retry after `Retry-After`."
    ),
    _E.DATABASE_UNAVAILABLE: ErrorSpec(
        503,
        4400,
        "The database of the session records cannot be reached; retry after `Retry-After`.",
    ),
    _E.SESSION_UNREACHABLE: ErrorSpec(
        503, 4400, "The session's worker did not confirm the inputs in time; they apply later."
    ),
    _E.DRAINING: ErrorSpec(
        503, 4503, "The worker is shutting down (`Retry-After`): offer again, another answers."
    ),
}

#: The close code of a socket refused for a reason outside the table.
DEFAULT_CLOSE_CODE = 4400


def lookup(code: ErrorCode | str) -> ErrorCode | None:
    """The table's code for ``code``, or None for a code outside it."""
    try:
        return ErrorCode(code)
    except ValueError:
        return None


def close_code(code: ErrorCode | str) -> int:
    """The WebSocket close code for a refusal with ``code`` (4400 outside the table)."""
    known = lookup(code)
    return known.close_code if known is not None else DEFAULT_CLOSE_CODE


def failure_body(code: ErrorCode | str, message: str, **meta: Any) -> dict[str, Any]:
    """The failure body: FastRTC's ``{"status": "failed", "meta": {"error": code}}`` with a
    human ``message`` (and any other ``meta``, e.g. ``limit``) beside the code."""
    return {"status": "failed", "meta": {"error": str(code), "message": message, **meta}}


def markdown_table() -> str:
    """The README's table of error codes, generated from ``ERRORS``."""
    lines = ["| code | HTTP status | close code | meaning |", "| --- | --- | --- | --- |"]
    for code, spec in ERRORS.items():
        lines.append(f"| `{code.value}` | {spec.status} | {spec.close_code} | {spec.meaning} |")
    return "\n".join(lines) + "\n"
