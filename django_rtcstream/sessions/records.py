"""``StreamSession`` rows: admission under ``concurrency_limit``, state changes.

Admission is one transaction: on PostgreSQL a per-stream advisory lock makes
"count live sessions, then insert" atomic across every worker; the partial
unique index on live ``webrtc_id`` refuses duplicates whichever worker an
offer reaches. On SQLite (the single-process default) the transaction takes
the database's write lock first, which serializes admissions.
"""

from __future__ import annotations

import zlib
from datetime import timedelta
from typing import Any

from channels.db import database_sync_to_async
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from django_rtcstream.exceptions import SignalingError
from django_rtcstream.models import ACTIVE_STATES, SessionState, StreamSession


def _lock_stream(stream: str) -> None:
    """Serialize admissions to one stream, across every thread and worker."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)",
                           [0x52544353, zlib.crc32(stream.encode()) & 0x7FFFFFFF])
        elif connection.vendor == "sqlite":
            # Django's ASGI handler gives each request its own thread, so admissions run
            # concurrently. A deferred transaction that reads, then writes, deadlocks
            # with another writer ("database is locked"); a write first takes SQLite's
            # write lock at once, and a second admission waits for it instead.
            table = StreamSession._meta.db_table
            cursor.execute(f'UPDATE "{table}" SET "state" = "state" WHERE 0')


def _reap(lease: float, **filters: Any) -> list[str]:
    """Mark live sessions whose worker stopped heartbeating as failed; their ids."""
    cutoff = timezone.now() - timedelta(seconds=lease)
    stale = StreamSession.objects.filter(state__in=ACTIVE_STATES, heartbeat_at__lt=cutoff, **filters)
    ids = list(stale.values_list("webrtc_id", flat=True))
    if ids:
        stale.update(state=SessionState.FAILED, closed_at=timezone.now(), close_reason="worker_lost")
    return ids


reap = database_sync_to_async(_reap)


def _admit(stream: str, webrtc_id: str, limit: int | None, lease: float,
           **fields: Any) -> StreamSession:
    try:
        with transaction.atomic():
            _lock_stream(stream)
            # Slots held by dead workers are freed before counting.
            _reap(lease, stream=stream)
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
            return StreamSession.objects.create(stream=stream, webrtc_id=webrtc_id,
                                                heartbeat_at=timezone.now(), **fields)
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


@database_sync_to_async
def heartbeat(beats: dict[Any, dict[str, int]]) -> None:
    """Refresh the lease and counters of this worker's live sessions."""
    now = timezone.now()
    for record_id, counters in beats.items():
        StreamSession.objects.filter(pk=record_id, state__in=ACTIVE_STATES).update(
            heartbeat_at=now, **counters
        )
