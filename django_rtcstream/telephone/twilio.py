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
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qs, urlsplit, urlunsplit
from xml.sax.saxutils import quoteattr

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from django_rtcstream import registry
from django_rtcstream.conf import rtc_settings
from django_rtcstream.errors import ErrorCode
from django_rtcstream.exceptions import SignalingError, StreamNotFound
from django_rtcstream.signaling.messages import UNREADABLE_BODY, body_refused

PHONE_RATE = 8000
DEFAULT_PORTS = {"https": 443, "wss": 443, "http": 80, "ws": 80}

#: POST parameters: a ``QueryDict`` (every value of a repeated name), or a mapping of
#: a name to one value or to a list of values.
Params = Mapping[str, str] | Mapping[str, Iterable[str]]


def _values(params: Params, name: str) -> list[str]:
    getlist = getattr(params, "getlist", None)
    if getlist is not None:  # QueryDict: params[name] would be the last value only
        return list(getlist(name))
    value = params[name]
    return [value] if isinstance(value, str) else list(value)


def signature(url: str, params: Params, auth_token: str) -> str:
    """Twilio's request signature (``X-Twilio-Signature``) of a URL and its POST parameters.

    HMAC-SHA1, keyed with the auth token, of the URL followed by each parameter name
    in sorted order, each time followed by the name's value; a repeated name gives
    each of its distinct values, sorted (``Digits=5678&Digits=1234`` signs
    ``Digits1234Digits5678``), as Twilio's own validator does. Base64.
    """
    payload = url + "".join(
        name + value for name in sorted(params) for value in sorted(set(_values(params, name)))
    )
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def url_variants(url: str) -> list[str]:
    """The URL without its port and with it (the scheme's default if it has none).

    Twilio does not sign the same form of the URL every time, so its validator accepts
    a signature of either (``https://host/x`` or ``https://host:443/x``).
    """
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # not a number: the URL is used as it is
        return [url]
    host = parts.netloc.rsplit(":", 1)[0] if port is not None else parts.netloc
    if port is None:
        port = DEFAULT_PORTS.get(parts.scheme)
    with_port = f"{host}:{port}" if port is not None else host
    return [urlunsplit(parts._replace(netloc=netloc)) for netloc in (host, with_port)]


def _same(a: str, b: str) -> bool:
    """Constant-time equality; unlike ``compare_digest`` on ``str``, fine with non-ASCII
    (a forged header or query may hold anything)."""
    return hmac.compare_digest(
        a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass")
    )


def valid_signature(
    url: str, params: Params, given: str | None, auth_token: str, body: bytes | None = None
) -> bool:
    """Whether ``given`` is Twilio's signature of this request.

    A request whose body is not a form (JSON) carries the body's SHA-256 as
    ``bodySHA256`` in the URL's query: then the body must hash to it, and only the
    URL (which holds the hash) is signed.
    """
    if not given:
        return False
    body_hash = parse_qs(urlsplit(url).query).get("bodySHA256")
    if body_hash:
        if not _same(hashlib.sha256(body or b"").hexdigest(), body_hash[0]):
            return False
        params = {}
    return any(
        _same(signature(variant, params, auth_token), given) for variant in url_variants(url)
    )


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
        return JsonResponse(exc.body(), status=exc.status)
    url = public_url(request.build_absolute_uri())
    auth_token = rtc_settings.TWILIO_AUTH_TOKEN
    try:
        # The body first: after request.POST has read a multipart body, it is gone.
        body = request.body if "bodySHA256" in request.GET else None
        params = request.POST
    except UNREADABLE_BODY as exc:
        refusal = body_refused(exc)
        return JsonResponse(refusal.body(), status=refusal.status)
    if auth_token and not valid_signature(
        url, params, request.headers.get("X-Twilio-Signature"), auth_token, body=body
    ):
        refusal = SignalingError(
            ErrorCode.INVALID_SIGNATURE,
            "X-Twilio-Signature is missing or does not match TWILIO_AUTH_TOKEN.",
        )
        return JsonResponse(refusal.body(), status=refusal.status)
    parameters = "".join(
        f"<Parameter name={quoteattr(name)} value={quoteattr(params[key])}/>"
        for name, key in (("caller", "From"), ("called", "To"))
        if params.get(key)
    )
    twiml = (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
        f"<Stream url={quoteattr(stream_url(url))}>{parameters}</Stream>"
        "</Connect></Response>"
    )
    return HttpResponse(twiml, content_type="application/xml")
