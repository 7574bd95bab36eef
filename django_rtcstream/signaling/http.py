"""HTTP signaling, FastRTC compatible: ``POST <prefix>/<stream>/webrtc/offer``.

The same URL takes offers and trickled candidates (``"type": "ice-candidate"``).
Success answers ``{"sdp", "type": "answer", "webrtc_id"}``; every failure is
``{"status": "failed", "meta": {"error": code, "message": ...}}`` with a 4xx,
429 or 503 status (FastRTC answers 200 even for failures).
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from django_rtcstream import registry
from django_rtcstream.conf import rtc_settings
from django_rtcstream.exceptions import SignalingError, StreamNotFound
from django_rtcstream.signaling.messages import candidate_fields, offer_fields, parse_json

logger = logging.getLogger(__name__)


def failure(exc: SignalingError) -> JsonResponse:
    return JsonResponse(exc.body(), status=exc.status)


def get_stream_or_fail(name: str) -> Any:
    try:
        return registry.get_stream(name)
    except StreamNotFound as exc:
        raise SignalingError("unknown_stream", str(exc), status=404) from None


async def _user_id(request: HttpRequest) -> Any:
    auser = getattr(request, "auser", None)
    if auser is None:
        return None
    user = await auser()
    return user.pk if user.is_authenticated else None


@csrf_exempt
@require_POST
async def offer(request: HttpRequest, stream: str) -> JsonResponse:
    """Answer an offer, take a trickled candidate, or (``"type": "close"``) hang up."""
    from django_rtcstream.sessions import bus
    from django_rtcstream.sessions.runtime import manager

    try:
        the_stream = get_stream_or_fail(stream)
        data = parse_json(request.body, rtc_settings.MAX_SIGNALING_BYTES)
        kind = data.get("type")
        if kind == "ice-candidate":
            candidate, webrtc_id = candidate_fields(data)
            await bus.send_candidate(stream, webrtc_id, candidate)
            return JsonResponse({"status": "success"})
        if kind == "close":
            await bus.send_close(stream, bus.check_webrtc_id(data.get("webrtc_id")),
                                 "client_hangup")
            return JsonResponse({"status": "success"})
        if kind != "offer":
            raise SignalingError("invalid_request",
                                 "'type' must be 'offer', 'ice-candidate' or 'close'.",
                                 fields={"type": ["Unknown or missing message type."]})
        sdp, webrtc_id = offer_fields(data)
        session, answer = await manager().open_webrtc(
            the_stream, webrtc_id, sdp,
            client_address=request.META.get("REMOTE_ADDR"),
            user_id=await _user_id(request),
        )
    except SignalingError as exc:
        logger.info("Signaling refused on %s: %s (%s)", stream, exc.code, exc)
        return failure(exc)
    return JsonResponse({"sdp": answer, "type": "answer", "webrtc_id": session.webrtc_id})
