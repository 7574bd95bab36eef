"""Telephone calls through Twilio: the voice webhook and request signatures.

The Media Streams consumer is in ``media_streams``.

Point a Twilio number's voice webhook (HTTP POST) at
``https://<your host><prefix>/<stream>/telephone/incoming``. It answers TwiML
that connects the call to ``wss://<host><prefix>/<stream>/telephone/handler``.
With ``RTCSTREAM["TWILIO_AUTH_TOKEN"]`` set, both the webhook and the
WebSocket upgrade must carry a valid ``X-Twilio-Signature`` (403 otherwise).
Behind a proxy, ``TELEPHONE_PUBLIC_URL`` (e.g. ``"https://example.com"``) is
the URL Twilio sees, used both to sign and to build the stream URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from xml.sax.saxutils import quoteattr

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from django_rtcstream import registry
from django_rtcstream.conf import rtc_settings
from django_rtcstream.exceptions import StreamNotFound
from django_rtcstream.signaling.messages import UNREADABLE_BODY, body_refused

PHONE_RATE = 8000


def signature(url: str, params: dict[str, str], auth_token: str) -> str:
    """Twilio's request signature: HMAC-SHA1 over the URL and the sorted POST parameters."""
    payload = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def valid_signature(url: str, params: dict[str, str], given: str | None, auth_token: str) -> bool:
    if not given:
        return False
    return hmac.compare_digest(signature(url, params, auth_token), given)


def public_url(request_url: str) -> str:
    """The URL as Twilio saw it (scheme and host replaced by TELEPHONE_PUBLIC_URL)."""
    base = rtc_settings.TELEPHONE_PUBLIC_URL
    if not base:
        return request_url
    parts, public = urlsplit(request_url), urlsplit(base)
    return urlunsplit((public.scheme, public.netloc, parts.path, parts.query, ""))


def stream_url(incoming_url: str) -> str:
    """The Media Streams WebSocket URL that goes with a webhook URL."""
    parts = urlsplit(incoming_url)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    if rtc_settings.TELEPHONE_WS_SCHEME:
        scheme = rtc_settings.TELEPHONE_WS_SCHEME
    path = parts.path[: -len("incoming")] + "handler"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


@csrf_exempt
@require_POST
def incoming(request: HttpRequest, stream: str) -> HttpResponse:
    """Twilio's voice webhook: TwiML that connects the call to the stream."""
    try:
        registry.get_stream(stream)
    except StreamNotFound as exc:
        return JsonResponse({"status": "failed", "meta": {"error": "unknown_stream",
                                                          "message": str(exc)}}, status=404)
    url = public_url(request.build_absolute_uri())
    auth_token = rtc_settings.TWILIO_AUTH_TOKEN
    try:
        params = {k: request.POST.get(k, "") for k in request.POST}
    except UNREADABLE_BODY as exc:
        refusal = body_refused(exc)
        return JsonResponse(refusal.body(), status=refusal.status)
    if auth_token and not valid_signature(url, params, request.headers.get("X-Twilio-Signature"),
                                          auth_token):
        return JsonResponse({"status": "failed", "meta": {
            "error": "invalid_signature",
            "message": "X-Twilio-Signature is missing or does not match TWILIO_AUTH_TOKEN."}},
            status=403)
    parameters = "".join(
        f"<Parameter name={quoteattr(name)} value={quoteattr(params[key])}/>"
        for name, key in (("caller", "From"), ("called", "To")) if params.get(key))
    twiml = ('<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
             f"<Stream url={quoteattr(stream_url(url))}>{parameters}</Stream>"
             "</Connect></Response>")
    return HttpResponse(twiml, content_type="application/xml")


def __getattr__(name: str) -> Any:
    # The consumer lives in media_streams, so that the URLconf (which imports this
    # module for the webhook) imports no PyAV or numpy (~0.1 s of a worker's start).
    if name == "TwilioMediaStreamConsumer":
        from django_rtcstream.telephone.media_streams import TwilioMediaStreamConsumer

        return TwilioMediaStreamConsumer
    raise AttributeError(name)
