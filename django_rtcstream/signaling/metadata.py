"""Stream discovery: ``GET <prefix>/streams/`` and ``GET <prefix>/<stream>/config``."""

from __future__ import annotations

import inspect
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.utils.module_loading import import_string
from django.views.decorators.http import require_GET

from django_rtcstream import registry
from django_rtcstream.conf import rtc_settings
from django_rtcstream.exceptions import SignalingError
from django_rtcstream.signaling.http import failure
from django_rtcstream.stream import Stream


def endpoints(request: HttpRequest, stream: Stream) -> dict[str, str]:
    """Absolute URLs of a stream's endpoints (HTTP) and paths (WebSocket)."""
    ns = request.resolver_match.namespace if request.resolver_match else "rtcstream"
    name = stream.name
    offer = reverse(f"{ns}:offer", kwargs={"stream": name})
    prefix = offer[: -len(f"{name}/webrtc/offer")]
    ws_scheme = "wss" if request.is_secure() else "ws"
    host = request.get_host()
    return {
        "offer": request.build_absolute_uri(offer),
        "config": request.build_absolute_uri(reverse(f"{ns}:config", kwargs={"stream": name})),
        "input": request.build_absolute_uri(reverse(f"{ns}:input", kwargs={"stream": name})),
        "outputs": request.build_absolute_uri(reverse(f"{ns}:outputs", kwargs={"stream": name})),
        "outputs_ticket": request.build_absolute_uri(
            reverse(f"{ns}:outputs-ticket", kwargs={"stream": name})
        ),
        "websocket": f"{ws_scheme}://{host}/ws{prefix}{name}/",
    }


async def resolve_rtc_configuration(stream: Stream) -> dict[str, Any]:
    """The ICE configuration for clients: the stream's, else the setting's; never None."""
    value: Any = stream.rtc_configuration
    if value is None:
        value = rtc_settings.RTC_CONFIGURATION
        if isinstance(value, str):
            value = import_string(value)
    if callable(value):
        if inspect.iscoroutinefunction(value):
            value = await value()
        else:
            value = await sync_to_async(value, thread_sensitive=False)()
            if inspect.isawaitable(value):
                value = await value
    return dict(value) if value else {"iceServers": []}


def describe(request: HttpRequest, stream: Stream) -> dict[str, Any]:
    return {**stream.describe(), "urls": endpoints(request, stream)}


@require_GET
def streams(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {"streams": [describe(request, s) for s in registry.get_streams().values()]}
    )


@require_GET
async def config(request: HttpRequest, stream: str) -> JsonResponse:
    try:
        the_stream = registry.get_stream(stream)
    except SignalingError as exc:  # StreamNotFound: unknown_stream, 404
        return failure(exc)
    data = describe(request, the_stream)
    data["rtc_configuration"] = await resolve_rtc_configuration(the_stream)
    return JsonResponse(data)
