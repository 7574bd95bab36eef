"""Parsing of signaling requests, shared by the HTTP view and the WebSocket consumer."""

from __future__ import annotations

import secrets
from typing import Any

from django_rtcstream import safejson
from django_rtcstream.exceptions import SignalingError
from django_rtcstream.sessions.bus import check_webrtc_id


def too_large(limit: int) -> SignalingError:
    return SignalingError("request_too_large", f"Signaling messages are limited to {limit} bytes.",
                          status=413)


def parse_json(raw: bytes | str, limit: int) -> dict[str, Any]:
    if len(raw) > limit:
        raise too_large(limit)
    try:
        data = safejson.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SignalingError("invalid_json", f"The body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SignalingError("invalid_json", "The body must be a JSON object.")
    return data


def offer_fields(data: dict[str, Any]) -> tuple[str, str]:
    """``(sdp, webrtc_id)`` of an offer; a missing id is generated (unguessable)."""
    sdp = data.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise SignalingError("invalid_offer", "An offer needs a non-empty 'sdp' string.",
                             fields={"sdp": ["This field is required."]})
    webrtc_id = data.get("webrtc_id")
    if webrtc_id in (None, ""):
        webrtc_id = secrets.token_urlsafe(24)
    return sdp, check_webrtc_id(webrtc_id)


def candidate_fields(data: dict[str, Any]) -> tuple[Any, str]:
    if "candidate" not in data:
        raise SignalingError("invalid_candidate", "An ice-candidate message needs 'candidate'.",
                             fields={"candidate": ["This field is required."]})
    if "webrtc_id" not in data:
        raise SignalingError("invalid_request", "An ice-candidate message needs 'webrtc_id'.",
                             fields={"webrtc_id": ["This field is required."]})
    from django_rtcstream.sessions.runtime import parse_candidate

    parse_candidate(data["candidate"])  # validate before it travels
    return data["candidate"], check_webrtc_id(data["webrtc_id"])
