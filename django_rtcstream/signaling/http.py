"""HTTP signaling, FastRTC compatible: ``POST <prefix>/<stream>/webrtc/offer``.

The same URL takes offers and trickled candidates (``"type": "ice-candidate"``).
Success answers ``{"sdp", "type": "answer", "webrtc_id"}``; every failure is
``{"status": "failed", "meta": {"error": code, "message": ...}}`` with a 4xx,
429 or 503 status (FastRTC answers 200 even for failures): 503 when the channel layer
(``broker_unavailable``) or the database (``database_unavailable``) cannot be reached.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from django_rtcstream import registry
from django_rtcstream.access import Requester
from django_rtcstream.api import permissions
from django_rtcstream.conf import rtc_settings
from django_rtcstream.errors import ErrorCode
from django_rtcstream.exceptions import DatabaseUnavailable, SignalingError
from django_rtcstream.sessions import records
from django_rtcstream.signaling.messages import (
    UNREADABLE_BODY,
    body_refused,
    candidate_fields,
    offer_fields,
    parse_json,
)

logger = logging.getLogger(__name__)


def retry_headers(exc: SignalingError) -> dict[str, str]:
    """``Retry-After`` for a 503 (the channel layer is away, a worker did not answer)."""
    if exc.status != 503:
        return {}
    return {"Retry-After": str(getattr(exc, "retry_after", 2))}


def failure(exc: SignalingError) -> JsonResponse:
    return JsonResponse(exc.body(), status=exc.status, headers=retry_headers(exc))


@csrf_exempt
@require_POST
async def offer(request: HttpRequest, stream: str) -> JsonResponse:
    """The offer URL through Django's request cycle (see ``signaling.direct`` for the other way)."""
    return await handle(request, stream)


def _no_view(request: HttpRequest) -> HttpResponse:
    """The view CsrfViewMiddleware is told about: its check never calls it."""
    raise AssertionError("the CSRF check called its view")


async def _cookie_needs_csrf(request: HttpRequest) -> None:
    """A hang-up authorised by the session cookie must pass Django's CSRF check.

    The offer URL is CSRF-exempt (FastRTC clients post to it from anywhere) and
    reads any body as JSON, so without this a cross-site form could hang up a
    logged-in user's session from its cookie alone. A request that fails the
    check keeps only what it carries itself: the session token.
    """
    auser = getattr(request, "auser", None)
    user = await auser() if auser is not None else getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return
    from django.contrib.auth.models import AnonymousUser
    from django.middleware.csrf import CsrfViewMiddleware

    refused = CsrfViewMiddleware(_no_view).process_view(request, _no_view, (), {})
    if refused is not None:  # as DRF's SessionAuthentication: the cookie does not count
        anonymous = AnonymousUser()

        async def no_user() -> AnonymousUser:
            return anonymous

        request.user = anonymous
        request.auser = no_user


async def handle(request: HttpRequest, stream: str) -> JsonResponse:
    """Answer an offer, take a trickled candidate, or (``"type": "close"``) hang up.

    The answer carries the session's ``token``: send it (``X-Session-Token``
    header, or ``token`` in a JSON body) to set inputs, read outputs or close.
    Trickled candidates need no token: a stranger's candidate cannot take over
    the media, which DTLS binds to the fingerprints of the offer and answer.
    """
    from django_rtcstream.sessions import bus
    from django_rtcstream.sessions.manager import manager

    try:
        the_stream = registry.get_stream(stream)  # StreamNotFound: unknown_stream, 404
        try:
            body = request.body  # through Django (DIRECT_OFFERS off), DATA_UPLOAD_* apply too
        except UNREADABLE_BODY as exc:
            raise body_refused(exc) from None
        data = parse_json(body, rtc_settings.MAX_SIGNALING_BYTES)
        kind = data.get("type")
        if kind == "ice-candidate":
            candidate, webrtc_id = candidate_fields(data)
            await bus.send_candidate(
                stream, webrtc_id, candidate, client=request.META.get("REMOTE_ADDR")
            )
            return JsonResponse({"status": "success"})
        if kind == "close":
            webrtc_id = bus.check_webrtc_id(data.get("webrtc_id"))
            record = await records.find_or_refuse(stream, webrtc_id, live=True)
            await _cookie_needs_csrf(request)
            requester = Requester.from_request(request, token=data.get("token"))
            await permissions.acheck("close", requester, the_stream, record)
            await bus.send_close(stream, webrtc_id, "client_hangup")
            return JsonResponse({"status": "success"})
        if kind != "offer":
            raise SignalingError(
                ErrorCode.INVALID_REQUEST,
                "'type' must be 'offer', 'ice-candidate' or 'close'.",
                fields={"type": ["Unknown or missing message type."]},
            )
        sdp, webrtc_id = offer_fields(data)
        requester = Requester.from_request(request)
        await permissions.acheck("open", requester, the_stream)
        session, answer = await manager().open_webrtc(
            the_stream,
            webrtc_id,
            sdp,
            client_address=requester.address,
            user_id=await requester.user_id(),
        )
    except SignalingError as exc:
        logger.info("Signaling refused on %s: %s (%s)", stream, exc.code, exc)
        return failure(exc)
    except records.DATABASE_ERRORS as exc:  # the user's session, read for the record
        logger.info("Signaling refused on %s: database unavailable (%r)", stream, exc)
        return failure(DatabaseUnavailable())
    return JsonResponse(
        {"sdp": answer, "type": "answer", "webrtc_id": session.webrtc_id, "token": session.token}
    )
