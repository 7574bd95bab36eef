"""Input hook (``POST <prefix>/<stream>/input``) and SSE output hook
(``GET <prefix>/<stream>/outputs?webrtc_id=``), with its tickets
(``POST <prefix>/<stream>/outputs/ticket``).

Both work from any worker: inputs travel to the owning worker over the
control bus, outputs come back through the session's output group. Both are
guarded by the ``input`` / ``outputs`` permission classes (by default: the
session's token, its user, or staff).

A browser's ``EventSource`` cannot send headers, so it would have to put the
session token in the URL, where every access log and proxy log keeps it. It
asks for a ticket instead: a POST that carries the token answers a random
ticket, good for one SSE request on that session within ``TICKET_SECONDS``.
Tickets live in Django's cache (hashed), so with a shared cache a ticket from
one worker opens the stream on another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncGenerator
from typing import Any

from asgiref.sync import async_to_sync
from django.core.cache import cache
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from django_rtcstream import registry
from django_rtcstream.access import Requester
from django_rtcstream.api import permissions
from django_rtcstream.api.serializers import input_serializer_class
from django_rtcstream.api.views import AnswersDatabaseOutages, RefusesUnreadableBodies
from django_rtcstream.conf import rtc_settings
from django_rtcstream.errors import ErrorCode
from django_rtcstream.exceptions import DatabaseUnavailable, InvalidInput, SignalingError
from django_rtcstream.models import StreamSession
from django_rtcstream.sessions import bus, outputs, records, shutdown
from django_rtcstream.signaling.http import failure, retry_headers
from django_rtcstream.signaling.messages import UNREADABLE_BODY, body_refused, parse_json


def _failed(exc: SignalingError) -> Response:
    return Response(exc.body(), status=exc.status, headers=retry_headers(exc))


class InputHookView(AnswersDatabaseOutages, RefusesUnreadableBodies, APIView):
    """Set a session's inputs by name: ``{"webrtc_id": ..., "<input>": value, ...}``.

    Values are validated by a serializer derived from the stream's
    ``additional_inputs`` (or the stream's ``input_serializer``); unnamed
    inputs keep their current values. The handler sees the new values on its
    next call, on whichever worker holds the session. The answer's ``inputs``
    are the values just after this update: concurrent updates apply one at a
    time, on the session's own worker.
    """

    permission_classes: list[Any] = []  # checked per session below

    def post(self, request: Request, stream: str) -> Response:
        try:
            the_stream = registry.get_stream(stream)  # StreamNotFound: unknown_stream, 404
            try:
                data = dict(request.data)
            except (ParseError, UnsupportedMediaType, TypeError, ValueError) as exc:
                raise SignalingError(
                    ErrorCode.INVALID_JSON, f"The body is not a JSON object: {exc}"
                ) from None
            except RecursionError:  # DRF's JSONParser lets json.loads' RecursionError through
                raise SignalingError(
                    ErrorCode.INVALID_JSON,
                    "The body is not a JSON object: it is nested too deeply.",
                ) from None
            webrtc_id = bus.check_webrtc_id(data.pop("webrtc_id", None))
            requester = Requester.from_request(request, token=data.pop("token", None))
            if "args" in data and "args" not in {s.name for s in the_stream.inputs.specs}:
                data = _positional(the_stream, data.pop("args"), data)
            record = async_to_sync(records.find_or_refuse)(stream, webrtc_id, live=True)
            permissions.check("input", requester, the_stream, record)
            serializer_class = input_serializer_class(the_stream)
            custom = the_stream.input_serializer is not None
            serializer = serializer_class(data=data, partial=not custom)
            unknown = set(data) - set(serializer.fields)
            if unknown:
                raise InvalidInput({k: ["Unknown input."] for k in sorted(unknown)})
            if not serializer.is_valid():
                raise InvalidInput({k: [str(m) for m in v] for k, v in serializer.errors.items()})
            validated = dict(serializer.validated_data)
            if custom:  # a custom serializer validates every input: they all change
                values = [validated.get(name) for name in serializer.fields]
                async_to_sync(bus.send_inputs)(stream, webrtc_id, values)
            else:  # merged where the session runs, so the answer holds its current values
                changes = the_stream.inputs.clean_changes(validated)
                values = async_to_sync(bus.update_inputs)(stream, webrtc_id, changes)
        except InvalidInput as exc:
            return Response(exc.body(), status=ErrorCode.INVALID_INPUT.status)
        except SignalingError as exc:
            return _failed(exc)
        names = list(serializer.fields) if custom else [s.name for s in the_stream.inputs.specs]
        return Response({"status": "success", "inputs": dict(zip(names, values, strict=False))})


def _positional(stream: Any, args: Any, rest: dict[str, Any]) -> dict[str, Any]:
    """FastRTC's form, ``{"webrtc_id": ..., "args": [...]}``: values in the order of
    ``additional_inputs``, as ``set_input(webrtc_id, *args)`` takes them."""
    if rest:
        raise InvalidInput({k: ["Send inputs by name or as 'args', not both."] for k in rest})
    names = [spec.name for spec in stream.inputs.specs]
    if not isinstance(args, list) or len(args) != len(names):
        raise InvalidInput(
            {
                "args": [
                    f"Expected a list of {len(names)} values ({', '.join(names) or 'no inputs'})."
                ]
            }
        )
    return dict(zip(names, args, strict=True))


input_hook = InputHookView.as_view()


def sse_event(data: Any, event: str | None = None, event_id: int | None = None) -> str:
    """One Server-Sent Event; JSON never spans lines, so no field holds a bare newline."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event:
        lines.append(f"event: {event}")
    lines.append(f"data: {json.dumps(data, default=str)}")
    return "\n".join(lines) + "\n\n"


TICKET_SECONDS = 30
TICKET_REFUSED = (
    "This SSE ticket is unknown, used or expired: get a new one with "
    "POST .../outputs/ticket just before opening the stream."
)


def _ticket_key(ticket: str) -> str:
    """The cache key of a ticket: its hash, so the cache holds nothing usable."""
    return "rtcstream:sse-ticket:" + permissions.hash_token(ticket)


@csrf_exempt  # it only answers a ticket, which a cross-site page cannot read
@require_POST
async def outputs_ticket(request: HttpRequest, stream: str) -> JsonResponse:
    """A single-use ticket for the SSE output hook: ``{"webrtc_id", "token"}`` (or the
    token as ``X-Session-Token``) answers ``{"ticket", "expires_in"}``.

    The request must pass the stream's ``outputs`` permission classes, exactly as
    the SSE request itself would; ``GET .../outputs?webrtc_id=&ticket=`` then
    stands for that check, once, within ``TICKET_SECONDS``, for this session only.
    """
    try:
        the_stream = registry.get_stream(stream)  # StreamNotFound: unknown_stream, 404
        try:
            body = request.body
        except UNREADABLE_BODY as exc:
            raise body_refused(exc) from None
        data = parse_json(body, rtc_settings.MAX_SIGNALING_BYTES)
        webrtc_id = bus.check_webrtc_id(data.get("webrtc_id"))
        record = await records.find_or_refuse(stream, webrtc_id, live=False)
        requester = Requester.from_request(request, token=data.get("token"))
        await permissions.acheck("outputs", requester, the_stream, record)
    except SignalingError as exc:
        return failure(exc)
    except records.DATABASE_ERRORS:  # the user's session or row, read by a permission
        return failure(DatabaseUnavailable())
    ticket = secrets.token_urlsafe(32)
    await cache.aset(_ticket_key(ticket), _grant(record), timeout=TICKET_SECONDS)
    return JsonResponse({"ticket": ticket, "expires_in": TICKET_SECONDS})


def _grant(record: StreamSession) -> dict[str, str]:
    """What a ticket opens: this one session (an id reused later is another session)."""
    return {"stream": record.stream, "webrtc_id": record.webrtc_id, "session": str(record.pk)}


async def _redeem_ticket(ticket: Any, record: StreamSession) -> None:
    """Use up a ticket for this session, or raise ``permission_denied``.

    Single use even when two requests race with the same ticket: only one
    ``delete`` of the key finds it there (each cache backend reports that).
    """
    key = _ticket_key(ticket) if isinstance(ticket, str) and ticket else None
    granted = await cache.aget(key) if key else None
    if granted is None or not await cache.adelete(key):
        raise SignalingError(ErrorCode.PERMISSION_DENIED, TICKET_REFUSED)
    if granted != _grant(record):
        raise SignalingError(ErrorCode.PERMISSION_DENIED, "This SSE ticket is for another session.")


@require_GET
async def outputs_hook(request: HttpRequest, stream: str) -> Any:
    """Stream the session's ``AdditionalOutputs`` as Server-Sent Events until it ends.

    Events are ``event: output`` with the stream's serialization of the
    outputs as JSON, keep-alive comments every ``SSE_KEEPALIVE`` seconds, and a
    final ``event: end`` when the session ends or, with ``"reason":
    "server_shutdown"``, when this worker begins shutting down. Several
    subscribers each get every event.

    ``?ticket=`` (from ``outputs_ticket``) grants access in place of the
    permission check; without it the request is checked as any other
    (``X-Session-Token``, FastRTC-style ``?token=``, the session's user, staff).
    """
    try:
        the_stream = registry.get_stream(stream)  # StreamNotFound: unknown_stream, 404
        webrtc_id = bus.check_webrtc_id(request.GET.get("webrtc_id"))
        record = await records.find_or_refuse(stream, webrtc_id, live=False)
        if "ticket" in request.GET:
            await _redeem_ticket(request.GET.get("ticket"), record)
        else:
            await permissions.acheck("outputs", Requester.from_request(request), the_stream, record)
        # Joined before answering: a broker that is away gets a 503, not a stream that
        # never hears anything.
        subscription = outputs.OutputSubscription(stream, webrtc_id)
        await subscription.join()
    except SignalingError as exc:
        return failure(exc)
    except records.DATABASE_ERRORS:  # the user's session or row, read by a permission
        return failure(DatabaseUnavailable())

    async def events() -> AsyncGenerator[str, None]:
        outputs = subscription.__aiter__()
        keepalive = rtc_settings.SSE_KEEPALIVE
        yield ": connected\n\n"
        n = 0
        pending = asyncio.ensure_future(outputs.__anext__())
        # The server waits for open responses before it stops: end this one when the
        # worker begins shutting down, whichever worker holds the session.
        stopping = asyncio.ensure_future(shutdown.wait())
        with shutdown.open_stream():
            try:
                while True:
                    done, _ = await asyncio.wait(
                        {pending, stopping}, timeout=keepalive, return_when=asyncio.FIRST_COMPLETED
                    )
                    if not done:
                        yield ": keep-alive\n\n"
                        continue
                    if pending not in done:
                        yield sse_event(
                            {"webrtc_id": webrtc_id, "reason": "server_shutdown"}, event="end"
                        )
                        return
                    try:
                        output = pending.result()
                    except StopAsyncIteration:
                        yield sse_event({"webrtc_id": webrtc_id}, event="end")
                        return
                    n += 1
                    yield sse_event(the_stream.serialize_output(output), event="output", event_id=n)
                    pending = asyncio.ensure_future(outputs.__anext__())
            finally:
                # The pending __anext__ runs inside the generator: let it finish cancelling
                # before closing the generator, or aclose() finds it still running.
                stopping.cancel()
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
                await outputs.aclose()

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
