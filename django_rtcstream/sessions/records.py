"""``StreamSession`` rows: admission under ``concurrency_limit``, state changes.

Admission is one transaction: on PostgreSQL a per-stream advisory lock makes
"count live sessions, then insert" atomic across every worker; the partial
unique index on live ``webrtc_id`` refuses duplicates whichever worker an
offer reaches. On SQLite (the single-process default) all ORM work of a
process runs in one thread, which serializes admission.
"""

from __future__ import annotations

import zlib
from typing import Any

from channels.db import database_sync_to_async
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from django_rtcstream.exceptions import SignalingError
from django_rtcstream.models import ACTIVE_STATES, SessionState, StreamSession


def _lock_stream(stream: str) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)",
                           [0x52544353, zlib.crc32(stream.encode()) & 0x7FFFFFFF])


def _admit(stream: str, webrtc_id: str, limit: int | None, **fields: Any) -> StreamSession:
    try:
        with transaction.atomic():
            _lock_stream(stream)
            if limit is not None:
                live = StreamSession.objects.filter(stream=stream, state__in=ACTIVE_STATES).count()
                if live >= limit:
                    raise SignalingError(
                        "concurrency_limit_reached",
                        f"Stream {stream!r} already has {live} of {limit} sessions; "
                        "try again when one ends.",
                        status=429,
                        limit=limit,
                    )
            return StreamSession.objects.create(stream=stream, webrtc_id=webrtc_id, **fields)
    except IntegrityError:
        raise SignalingError(
            "connection_already_exists",
            f"A live session with webrtc_id {webrtc_id!r} already exists.",
            status=409,
        ) from None


admit = database_sync_to_async(_admit)


@database_sync_to_async
def mark_connected(record_id: Any) -> None:
    StreamSession.objects.filter(pk=record_id, state__in=ACTIVE_STATES).update(
        state=SessionState.CONNECTED, connected_at=timezone.now()
    )


@database_sync_to_async
def mark_connecting(record_id: Any) -> None:
    StreamSession.objects.filter(pk=record_id, state=SessionState.NEW).update(
        state=SessionState.CONNECTING
    )


@database_sync_to_async
def mark_closed(record_id: Any, state: str, reason: str, counters: dict[str, int]) -> None:
    StreamSession.objects.filter(pk=record_id).update(
        state=state, closed_at=timezone.now(), close_reason=reason[:200], **counters
    )


@database_sync_to_async
def save_inputs(record_id: Any, inputs: list[Any]) -> None:
    StreamSession.objects.filter(pk=record_id).update(inputs=inputs)


@database_sync_to_async
def find(stream: str, webrtc_id: str) -> StreamSession | None:
    """The newest record of this id on this stream (live first)."""
    qs = StreamSession.objects.filter(stream=stream, webrtc_id=webrtc_id)
    return qs.filter(state__in=ACTIVE_STATES).first() or qs.order_by("-created_at").first()
