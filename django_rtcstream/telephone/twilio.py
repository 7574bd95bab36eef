"""Telephone calls through Twilio: the voice webhook and the Media Streams consumer.

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
from django_rtcstream.telephone.audio_socket import AudioSocketConsumer

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
    params = {k: request.POST.get(k, "") for k in request.POST}
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


class TwilioMediaStreamConsumer(AudioSocketConsumer):
    """Twilio Media Streams, both ways: mu-law 8 kHz at real time, marks and clears."""

    channel_kind = "phone"

    async def connect(self) -> None:
        auth_token = rtc_settings.TWILIO_AUTH_TOKEN
        if auth_token:
            headers = {k.decode("latin1").lower(): v.decode("latin1")
                       for k, v in self.scope.get("headers", [])}
            scheme = "wss" if self.scope.get("scheme") in ("wss", "https") else "ws"
            url = public_url(f"{scheme}://{headers.get('host', '')}{self.scope['path']}")
            if rtc_settings.TELEPHONE_PUBLIC_URL:
                url = stream_url(url.replace("/handler", "/incoming"))
            query = self.scope.get("query_string", b"").decode()
            if query:
                url = f"{url}?{query}"
            if not valid_signature(url, {}, headers.get("x-twilio-signature"), auth_token):
                await self.close(code=4403)
                return
        self.marks_played: list[str] = []
        self.dtmf: list[str] = []
        self._bursts = 0
        await super().connect()

    # Twilio's events -------------------------------------------------------------------

    async def on_connected(self, data: dict[str, Any]) -> None:
        """Twilio's hello; nothing to do."""

    async def on_start(self, data: dict[str, Any]) -> None:
        if self.session is not None:
            await self.error("The call already started.")
            return
        start = data.get("start") if isinstance(data.get("start"), dict) else {}
        self.stream_sid = data.get("streamSid") or start.get("streamSid")
        self.encoding, self.input_rate, self.output_rate = "mulaw", PHONE_RATE, PHONE_RATE
        custom = start.get("customParameters") if isinstance(start.get("customParameters"), dict) \
            else None
        await self.open_session(self.stream_sid, phone=True, call_sid=str(start.get("callSid", ""))[:64],
                                custom=custom)

    async def on_mark(self, data: dict[str, Any]) -> None:
        mark = data.get("mark") if isinstance(data.get("mark"), dict) else {}
        self.marks_played.append(str(mark.get("name")))
        if self.session is not None:
            self.session.send_message({"type": "log", "data": f"played:{mark.get('name')}"})

    async def on_dtmf(self, data: dict[str, Any]) -> None:
        digit = (data.get("dtmf") or {}).get("digit") if isinstance(data.get("dtmf"), dict) else None
        if not isinstance(digit, str) or self.session is None:
            return
        self.dtmf.append(digit)
        handler = self.session.handler
        on_dtmf = getattr(handler, "on_dtmf", None)
        if callable(on_dtmf):
            await self.session.call(on_dtmf, digit)

    # Twilio's shapes for what we send ----------------------------------------------------

    def media_message(self, payload: bytes) -> dict[str, Any]:
        return {"event": "media", "streamSid": self.stream_sid,
                "media": {"payload": base64.b64encode(payload).decode()}}

    def clear_message(self) -> dict[str, Any]:
        return {"event": "clear", "streamSid": self.stream_sid}

    async def on_burst_end(self) -> None:
        """Mark the end of each reply: Twilio echoes the mark when the caller heard it all."""
        self._bursts += 1
        await self.send_json({"event": "mark", "streamSid": self.stream_sid,
                              "mark": {"name": f"reply-{self._bursts}"}})

    async def started(self) -> None:
        """Twilio wants nothing back at start."""

    def on_session_message(self, message: dict[str, Any]) -> None:
        # A phone has no data channel: only the end of the session matters here.
        if message["type"] == "closed":
            super().on_session_message(message)
