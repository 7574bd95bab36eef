"""Input hook (``POST <prefix>/<stream>/input``) and SSE output hook
(``GET <prefix>/<stream>/outputs?webrtc_id=``).

Both work from any worker: inputs travel to the owning worker over the
control bus, outputs come back through the session's output group.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from django_rtcstream.conf import rtc_settings
from django_rtcstream.exceptions import InvalidInput, SignalingError, UnknownSession
from django_rtcstream.sessions import bus, records
from django_rtcstream.signaling.http import failure, get_stream_or_fail
from django_rtcstream.signaling.messages import parse_json


@csrf_exempt
@require_POST
async def input_hook(request: HttpRequest, stream: str) -> JsonResponse:
    """Set a session's inputs by name: ``{"webrtc_id": ..., "<input name>": value, ...}``."""
    try:
        the_stream = get_stream_or_fail(stream)
        data = parse_json(request.body, rtc_settings.MAX_SIGNALING_BYTES)
        webrtc_id = bus.check_webrtc_id(data.pop("webrtc_id", None))
        record = await records.find(stream, webrtc_id)
        if record is None or not record.is_live:
            raise UnknownSession(webrtc_id)
        if "args" in data and len(data) == 1:
            values = the_stream.inputs.clean_args(data["args"])
        else:
            current = record.inputs if isinstance(record.inputs, list) else []
            if len(current) != len(the_stream.inputs):
                current = the_stream.inputs.defaults()
            values = the_stream.inputs.clean_named(data, current)
        await bus.send_inputs(stream, webrtc_id, values)
    except InvalidInput as exc:
        return JsonResponse({"status": "failed", "meta": {"error": "invalid_input",
                                                          "message": str(exc)},
                             "errors": exc.errors}, status=400)
    except SignalingError as exc:
        return failure(exc)
    names = [s.name for s in the_stream.inputs.specs]
    return JsonResponse({"status": "success", "inputs": dict(zip(names, values)) if names
                         else values})


def sse_event(data: Any, event: str | None = None, event_id: int | None = None) -> str:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event:
        lines.append(f"event: {event}")
    for line in json.dumps(data, default=str).splitlines() or [""]:
        lines.append(f"data: {line}")
    return "\n".join(lines) + "\n\n"


@require_GET
async def outputs_hook(request: HttpRequest, stream: str) -> Any:
    """Stream the session's ``AdditionalOutputs`` as Server-Sent Events until it ends."""
    try:
        the_stream = get_stream_or_fail(stream)
        webrtc_id = bus.check_webrtc_id(request.GET.get("webrtc_id"))
        if await records.find(stream, webrtc_id) is None:
            raise UnknownSession(webrtc_id)
    except SignalingError as exc:
        return failure(exc)

    async def events() -> AsyncIterator[str]:
        outputs = bus.subscribe_outputs(stream, webrtc_id).__aiter__()
        keepalive = rtc_settings.SSE_KEEPALIVE
        yield ": connected\n\n"
        n = 0
        pending = asyncio.ensure_future(outputs.__anext__())
        try:
            while True:
                done, _ = await asyncio.wait({pending}, timeout=keepalive)
                if not done:
                    yield ": keep-alive\n\n"
                    continue
                try:
                    output = pending.result()
                except StopAsyncIteration:
                    yield sse_event({"webrtc_id": webrtc_id}, event="end")
                    return
                n += 1
                yield sse_event(the_stream.serialize_output(output), event="output", event_id=n)
                pending = asyncio.ensure_future(outputs.__anext__())
        finally:
            pending.cancel()
            await outputs.aclose()

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
