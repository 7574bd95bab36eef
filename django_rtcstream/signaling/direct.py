"""Offers answered straight from ASGI, outside Django's request cycle.

Why: under daphne, Django's request cycle costs an offer more than aiortc does.
Each ``MiddlewareMixin`` middleware hops to the one thread-sensitive thread for
``process_request`` and again for ``process_response``, and the request
signals and ``response.close()`` hop too. With simultaneous offers those hops
queue behind each other. ``bench/offers.py`` measures what this saves (figures in
bench/README.md, "Figures the code cites").

What is kept:

- the URL is resolved with the project's URLconf, so the prefix is whatever the
  project's ``include()`` says, and only a POST that resolves to the offer
  view is taken (anything else, and every other method, goes to Django);
- the request is a real ``ASGIRequest``, and the view code is the same
  (``signaling.http.handle``);
- ``request.session``, ``request.user`` and ``request.auser`` are set as
  ``SessionMiddleware`` and ``AuthenticationMiddleware`` would set them, when
  those are in ``MIDDLEWARE``; permission classes see the same user;
- a ``Host`` outside ``ALLOWED_HOSTS`` goes to Django, which refuses it;
- ``SecurityMiddleware``, when in ``MIDDLEWARE``, runs as it is (inline: it
  does no I/O), so ``SECURE_SSL_REDIRECT`` still redirects plain-HTTP offers
  and its headers are still set.

What is skipped: every other middleware (CORS headers, custom logging...) and
the ``request_started`` / ``request_finished`` signals. Check W003 warns when
``MIDDLEWARE`` holds django-cors-headers; ``RTCSTREAM["DIRECT_OFFERS"] = False``
sends offers through Django like any other request.
"""

from __future__ import annotations

import io
from functools import partial
from importlib import import_module
from typing import Any

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse
from django.urls import Resolver404, get_resolver
from django.utils.functional import SimpleLazyObject

from django_rtcstream.conf import rtc_settings
from django_rtcstream.signaling.messages import too_large

SECURITY_MIDDLEWARE = "django.middleware.security.SecurityMiddleware"
SESSION_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"
AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"
SUFFIX = "/webrtc/offer"


class DirectOffers:
    """HTTP ASGI app: offer POSTs are answered here, everything else by ``app`` (Django)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].endswith(SUFFIX)
            and rtc_settings.DIRECT_OFFERS
        ):
            stream = offer_stream(scope)
            if stream is not None:
                body_file = io.BytesIO()  # filled once the checks pass; read when asked
                request = ASGIRequest(scope, body_file)
                if valid_host(request):
                    return await answer(request, body_file, receive, send, stream)
        return await self.app(scope, receive, send)


def valid_host(request: ASGIRequest) -> bool:
    """False for a Host outside ALLOWED_HOSTS: Django answers those (400), as for any URL."""
    try:
        request.get_host()
    except DisallowedHost:
        return False
    return True


def offer_stream(scope: Any) -> str | None:
    """The stream name if this path resolves to the offer view, else None."""
    from django_rtcstream.signaling import http  # (the URLconf imports it, and DRF, anyway)

    if settings.FORCE_SCRIPT_NAME:
        return None  # rare; Django knows how to strip it
    path = scope["path"].removeprefix(scope.get("root_path", "") or "")
    try:
        match = get_resolver().resolve(path)
    except Resolver404:
        return None
    return match.kwargs.get("stream") if match.func is http.offer else None


async def answer(
    request: ASGIRequest, body_file: io.BytesIO, receive: Any, send: Any, stream: str
) -> None:
    from django_rtcstream.signaling import http

    security = security_middleware()
    redirect = security.process_request(request) if security is not None else None
    if redirect is not None:  # SECURE_SSL_REDIRECT: the body is not wanted
        await send_response(redirect, send)
        return
    limit = rtc_settings.MAX_SIGNALING_BYTES
    body = await read_body(receive, limit)
    if body is None:
        return  # the client went away
    if len(body) > limit:
        # Refused before the rest is read: a big body costs nothing more.
        response: HttpResponse = http.failure(too_large(limit))
    else:
        body_file.write(body)
        body_file.seek(0)
        authenticate(request)
        response = await http.handle(request, stream)
    if security is not None:
        response = security.process_response(request, response)
    await send_response(response, send)


def security_middleware() -> Any:
    """Django's SecurityMiddleware if the project uses it (built per request: cheap,
    and it follows settings changes)."""
    if SECURITY_MIDDLEWARE not in settings.MIDDLEWARE:
        return None
    from django.middleware.security import SecurityMiddleware

    # Only its process_request/process_response are called: get_response never is.
    return SecurityMiddleware(lambda request: None)  # type: ignore[arg-type]


async def read_body(receive: Any, limit: int) -> bytes | None:
    """The body, or its first ``limit + 1`` bytes if it is longer; None on disconnect."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > limit or not message.get("more_body", False):
            return b"".join(chunks)


def authenticate(request: ASGIRequest) -> None:
    """What the session and authentication middlewares set, if the project uses them."""
    if SESSION_MIDDLEWARE not in settings.MIDDLEWARE:
        return
    engine = import_module(settings.SESSION_ENGINE)
    request.session = engine.SessionStore(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
    if AUTH_MIDDLEWARE in settings.MIDDLEWARE:
        from django.contrib.auth.middleware import auser, get_user

        # As AuthenticationMiddleware does; the stubs type request.user as the user itself.
        request.user = SimpleLazyObject(lambda: get_user(request))  # type: ignore[assignment]
        request.auser = partial(auser, request)


async def send_response(response: HttpResponse, send: Any) -> None:
    headers = [(name.encode("ascii"), value.encode("latin1")) for name, value in response.items()]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})
