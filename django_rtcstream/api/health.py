"""Health endpoints for load balancers and orchestrators.

- ``GET <prefix>/health/live``: 200 as long as the worker's event loop answers.
- ``GET <prefix>/health/ready``: 200 when the database and the channel layer
  answer and the worker is not draining or shutting down, else 503; the JSON body says what
  failed, so a load balancer moves on and a person can read why.

Both are public (a probe carries no credentials) and say nothing but "ok" or
the kind of failure.
"""

from __future__ import annotations

import asyncio
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

PROBE_SECONDS = 2.0


@require_GET
async def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
async def ready(request: HttpRequest) -> JsonResponse:
    from django_rtcstream.sessions import drain, shutdown

    results = dict(
        zip(
            ("database", "channel_layer"),
            await asyncio.gather(_probe(_database()), _probe(_channel_layer())),
            strict=True,
        )
    )
    draining = shutdown.begun() or drain.draining()
    ok = not draining and all(value == "ok" for value in results.values())
    body: dict[str, Any] = {
        "status": "ready" if ok else "unavailable",
        "checks": {**results, "draining": draining},
    }
    response = JsonResponse(body, status=200 if ok else 503)
    if not ok:
        response["Retry-After"] = "5"
    return response


async def _probe(check: Any) -> str:
    try:
        await asyncio.wait_for(check, PROBE_SECONDS)
    except TimeoutError:
        return f"no answer within {PROBE_SECONDS:g} s"
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"
    return "ok"


async def _database() -> None:
    from django_rtcstream.sessions import records

    await records.submit(_select_one)


def _select_one() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def _channel_layer() -> None:
    from django_rtcstream.sessions import bus

    # Touches the broker (a set removal on Redis), leaves nothing behind.
    await bus.layer().group_discard("rtcstream.health", "rtcstream.health.probe")
