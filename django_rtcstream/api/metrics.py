"""``GET <prefix>/metrics``: the workers' figures in Prometheus' text format.

Who may read them: a scraper that sends ``Authorization: Bearer <METRICS_TOKEN>``,
or whoever ``METRICS_PERMISSION_CLASSES`` allows (staff by default, by their
session cookie, for a person looking). Refusals answer the app's failure body:
401 ``not_authenticated`` (no credentials) or ``invalid_token`` (a bearer token that
is not the site's), 403 ``permission_denied`` (logged in, not allowed). The
instruments and how several workers share them are in ``django_rtcstream.metrics``.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.module_loading import import_string
from django.views.decorators.http import require_GET

from django_rtcstream.conf import rtc_settings
from django_rtcstream.errors import ErrorCode

REALM = 'Bearer realm="rtcstream-metrics"'


def _failure(status: int, code: str, message: str, **headers: str) -> JsonResponse:
    return JsonResponse(
        {"status": "failed", "meta": {"error": code, "message": message}},
        status=status,
        headers=headers,
    )


def _allowed(classes: list[Any], request: HttpRequest) -> bool:
    return all(cls().has_permission(request, None) for cls in classes)


async def refusal(request: HttpRequest) -> JsonResponse | None:
    """None if the request may read the metrics, else the answer that says why not."""
    scheme, _, credentials = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    token = rtc_settings.METRICS_TOKEN
    if scheme.lower() == "bearer":
        if token and hmac.compare_digest(
            credentials.strip().encode("utf-8", "surrogatepass"), str(token).encode()
        ):
            return None
        why = (
            "The bearer token is not this site's RTCSTREAM['METRICS_TOKEN']: send the "
            "configured one."
            if token
            else "This site has no RTCSTREAM['METRICS_TOKEN'], so no bearer token is "
            "accepted: set one, or log in as staff."
        )
        return _failure(
            401, "invalid_token", why, **{"WWW-Authenticate": f'{REALM}, error="invalid_token"'}
        )
    auser = getattr(request, "auser", None)
    if auser is not None:
        request.user = await auser()
    classes = [
        import_string(c) if isinstance(c, str) else c
        for c in rtc_settings.METRICS_PERMISSION_CLASSES
    ]
    if await sync_to_async(_allowed)(classes, request):
        return None
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return _failure(
            401,
            "not_authenticated",
            "The metrics are for staff and scrapers: log in as staff, or send "
            "'Authorization: Bearer <token>' with the site's RTCSTREAM['METRICS_TOKEN'].",
            **{"WWW-Authenticate": REALM},
        )
    return _failure(
        403,
        ErrorCode.PERMISSION_DENIED,
        "Your account may not read the metrics (RTCSTREAM['METRICS_PERMISSION_CLASSES']; "
        "staff by default).",
    )


@require_GET
async def view(request: HttpRequest) -> HttpResponse:
    refused = await refusal(request)
    if refused is not None:
        return refused
    from django_rtcstream import metrics

    if not metrics.available():
        return _failure(
            501,
            "metrics_unavailable",
            "prometheus_client is not installed: pip install 'django-rtcstream[metrics]'.",
        )
    metrics.sample()  # this worker's own figures as of now
    try:
        body, content_type = await asyncio.to_thread(
            metrics.exposition, request.META.get("HTTP_ACCEPT")
        )
    except FileNotFoundError as exc:
        return _failure(
            503,
            "metrics_unavailable",
            f"PROMETHEUS_MULTIPROC_DIR ({exc}) does not exist: create it (empty) before "
            "the workers start.",
        )
    return HttpResponse(body, content_type=content_type)
