"""Parsing of signaling requests, shared by the HTTP view and the WebSocket consumer."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent

from django_rtcstream import safejson
from django_rtcstream.errors import ErrorCode
from django_rtcstream.exceptions import SignalingError
from django_rtcstream.sessions.bus import check_webrtc_id

#: What Django raises when it will not read a request's body or form. Uncaught, these
#: become Django's bare 400 page and an error with a traceback on ``django.security``.
UNREADABLE_BODY = (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)


def too_large(limit: int, what: str = "Signaling messages") -> SignalingError:
    return SignalingError(ErrorCode.REQUEST_TOO_LARGE, f"{what} are limited to {limit} bytes.")


def body_refused(exc: Exception) -> SignalingError:
    """The failure for one of ``UNREADABLE_BODY``: 413 for a body over
    ``DATA_UPLOAD_MAX_MEMORY_SIZE``, 400 for too many form fields or files."""
    if isinstance(exc, RequestDataTooBig):
        return too_large(
            settings.DATA_UPLOAD_MAX_MEMORY_SIZE, "Request bodies (DATA_UPLOAD_MAX_MEMORY_SIZE)"
        )
    if isinstance(exc, TooManyFilesSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
        return SignalingError(
            ErrorCode.TOO_MANY_FILES,
            f"The form has more files than DATA_UPLOAD_MAX_NUMBER_FILES ({limit}).",
        )
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    return SignalingError(
        ErrorCode.TOO_MANY_FIELDS,
        f"The form has more fields than DATA_UPLOAD_MAX_NUMBER_FIELDS ({limit}).",
    )


def parse_json(raw: bytes | str, limit: int) -> dict[str, Any]:
    if len(raw) > limit:
        raise too_large(limit)
    try:
        data = safejson.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SignalingError(ErrorCode.INVALID_JSON, f"The body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SignalingError(ErrorCode.INVALID_JSON, "The body must be a JSON object.")
    return data


def offer_fields(data: dict[str, Any]) -> tuple[str, str]:
    """``(sdp, webrtc_id)`` of an offer; a missing id is generated (unguessable)."""
    sdp = data.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise SignalingError(
            ErrorCode.INVALID_OFFER,
            "An offer needs a non-empty 'sdp' string.",
            fields={"sdp": ["This field is required."]},
        )
    webrtc_id = data.get("webrtc_id")
    if webrtc_id in (None, ""):
        webrtc_id = secrets.token_urlsafe(24)
    return sdp, check_webrtc_id(webrtc_id)


def candidate_fields(data: dict[str, Any]) -> tuple[Any, str]:
    if "candidate" not in data:
        raise SignalingError(
            ErrorCode.INVALID_CANDIDATE,
            "An ice-candidate message needs 'candidate'.",
            fields={"candidate": ["This field is required."]},
        )
    if "webrtc_id" not in data:
        raise SignalingError(
            ErrorCode.INVALID_REQUEST,
            "An ice-candidate message needs 'webrtc_id'.",
            fields={"webrtc_id": ["This field is required."]},
        )
    from django_rtcstream.media.ice import parse_candidate

    parse_candidate(data["candidate"])  # validate before it travels
    return data["candidate"], check_webrtc_id(data["webrtc_id"])
