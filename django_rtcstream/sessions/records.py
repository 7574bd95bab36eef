"""``StreamSession`` rows: admission under ``concurrency_limit``, state changes.

Admission is one transaction: on PostgreSQL a per-stream advisory lock makes
"count live sessions, then insert" atomic across every worker; the partial
unique index on live ``webrtc_id`` refuses duplicates whichever worker an
offer reaches. On SQLite (the single-process default) the transaction takes
the database's write lock first, which serializes admissions.

Every function here runs on one thread of its own per worker process
(``on_records_thread``), which keeps its database connection. Django's
``database_sync_to_async`` would run each call on the calling request's
thread, or, for a session's later writes, on a new thread per request context,
and (with the default ``CONN_MAX_AGE = 0``) open and close a connection
around every call: on SQLite that was most of an admission's cost. One
thread also serializes this process's session writes, which SQLite does
anyway.

The database may become unreachable for a while (a restart, a failover, a cut
network). A call then raises ``DatabaseUnavailable`` (503 for requests) at
once instead of Django's ``OperationalError``; the broken connection is closed,
so the first call after the outage connects again; one warning per outage is
logged. ``reachable_for()`` tells how long calls have been succeeding: leases of
other workers are trusted to be stale only after the database has been
reachable for a whole lease (``SessionManager._heartbeat``, ``_admit``), since
those workers could not heartbeat during the outage either.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from django_rtcstream.errors import ErrorCode
from django_rtcstream.exceptions import DatabaseUnavailable, SignalingError, UnknownSession
from django_rtcstream.models import ACTIVE_STATES, SessionState, StreamSession

P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger(__name__)

_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rtcstream-records")

#: What Django raises when the database cannot be reached or the connection broke.
DATABASE_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)

# Written on the records thread only (monotonic seconds).
_outage_since: float | None = None  # the first failure of the outage going on
_reachable_since: float | None = None  # the first success since the last failure


def reachable_for() -> float:
    """Seconds the records thread's calls have been reaching the database without a
    failure (0 before the first success, and during an outage)."""
    since = _reachable_since
    return 0.0 if since is None else time.monotonic() - since


def _run(fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    global _outage_since, _reachable_since
    try:
        result = fn(*args, **kwargs)
    except DATABASE_ERRORS as exc:
        _close_if_broken()
        _reachable_since = None
        if _outage_since is None:
            _outage_since = time.monotonic()
            logger.warning(
                "django-rtcstream cannot reach the database (%s): offers and "
                "lookups answer 503 database_unavailable, running sessions go on "
                "and their records catch up once it is back",
                str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc),
            )
        raise DatabaseUnavailable() from exc
    except Exception:
        _close_if_broken()
        _reached()
        raise
    _reached()
    return result


def _reached() -> None:
    global _outage_since, _reachable_since
    if _outage_since is not None:
        logger.info(
            "django-rtcstream reaches the database again (after %.1f s)",
            time.monotonic() - _outage_since,
        )
        _outage_since = None
    if _reachable_since is None:
        _reachable_since = time.monotonic()


def _close_if_broken() -> None:
    """Close a connection that broke (a database restart, a cut network), so the next
    call reconnects instead of failing on the dead one."""
    if (
        connection.connection is not None
        and not connection.in_atomic_block
        and not connection.is_usable()
    ):
        connection.close()


def submit(fn: Callable[..., R], *args: Any, **kwargs: Any) -> asyncio.Future[R]:
    """Start ``fn`` on the records thread now; await the result later.

    Submitting at once, rather than when a coroutine is first awaited, lets the
    thread take the GIL for its share of the work while the caller is still busy
    on the loop (an offer's admission while aiortc builds the answer).
    """
    return asyncio.get_running_loop().run_in_executor(
        _executor, functools.partial(_run, fn, *args, **kwargs)
    )


def on_records_thread(fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """Run ``fn`` on the records thread; its connection outlives the call."""

    @functools.wraps(fn)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        return await submit(fn, *args, **kwargs)

    return call


def _lock_stream(stream: str) -> None:
    """Serialize admissions to one stream, across every thread and worker."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)",
                [0x52544353, zlib.crc32(stream.encode()) & 0x7FFFFFFF],
            )
        elif connection.vendor == "sqlite":
            # Django's ASGI handler gives each request its own thread, so admissions run
            # concurrently. A deferred transaction that reads, then writes, deadlocks
            # with another writer ("database is locked"); a write first takes SQLite's
            # write lock at once, and a second admission waits for it instead.
            table = StreamSession._meta.db_table
            cursor.execute(f'UPDATE "{table}" SET "state" = "state" WHERE 0')


def _reap(lease: float, *, keep: Collection[Any] = (), **filters: Any) -> list[str]:
    """Mark live sessions whose worker stopped heartbeating as failed; their ids.

    ``keep``: record ids of the calling worker's own live sessions. Those are
    never reaped, whatever their heartbeat says: a worker that is this busy is
    alive, and its next heartbeat refreshes them.
    """
    cutoff = timezone.now() - timedelta(seconds=lease)
    stale = StreamSession.objects.filter(
        state__in=ACTIVE_STATES, heartbeat_at__lt=cutoff, **filters
    )
    if keep:
        stale = stale.exclude(pk__in=list(keep))
    ids = list(stale.values_list("webrtc_id", flat=True))
    if ids:
        stale.update(
            state=SessionState.FAILED, closed_at=timezone.now(), close_reason="worker_lost"
        )
    return ids


reap = on_records_thread(_reap)


def _admit(
    stream: str,
    webrtc_id: str,
    limit: int | None,
    lease: float,
    *,
    keep: Collection[Any] = (),
    **fields: Any,
) -> StreamSession:
    try:
        with transaction.atomic():
            _lock_stream(stream)
            if limit is not None:
                live = StreamSession.objects.filter(stream=stream, state__in=ACTIVE_STATES).count()
                # At the limit, slots held by dead workers are freed and counted again
                # (below it, the heartbeat's reaping is enough: one query less per offer).
                # Only once the database has been reachable for a lease: just after an
                # outage every worker's leases look expired, the live ones' too.
                if (
                    live >= limit
                    and reachable_for() >= lease
                    and _reap(lease, keep=keep, stream=stream)
                ):
                    live = StreamSession.objects.filter(
                        stream=stream, state__in=ACTIVE_STATES
                    ).count()
                if live >= limit:
                    raise SignalingError(
                        ErrorCode.CONCURRENCY_LIMIT_REACHED,
                        f"Stream {stream!r} already has {live} of {limit} sessions; "
                        "try again when one ends.",
                        limit=limit,
                    )
            return StreamSession.objects.create(
                stream=stream, webrtc_id=webrtc_id, heartbeat_at=timezone.now(), **fields
            )
    except IntegrityError:
        raise SignalingError(
            ErrorCode.CONNECTION_ALREADY_EXISTS,
            f"A live session with webrtc_id {webrtc_id!r} already exists.",
        ) from None


def admit(
    stream: str, webrtc_id: str, limit: int | None, lease: float, **fields: Any
) -> asyncio.Future[StreamSession]:
    """Admit a session; submitted to the records thread at once (see ``submit``)."""
    return submit(_admit, stream, webrtc_id, limit, lease, **fields)


@on_records_thread
def mark_connected(record_id: Any) -> None:
    StreamSession.objects.filter(pk=record_id, state__in=ACTIVE_STATES).update(
        state=SessionState.CONNECTED, connected_at=timezone.now()
    )


@on_records_thread
def mark_closed(
    record_id: Any,
    state: str,
    reason: str,
    counters: dict[str, int],
    closed_at: Any = None,
    stats: dict[str, Any] | None = None,
) -> None:
    """The session ended: its state, reason, final counters and (``sessions/stats.py``)
    its last stats sample, history and summary."""
    StreamSession.objects.filter(pk=record_id).update(
        state=state,
        closed_at=closed_at or timezone.now(),
        close_reason=reason[:200],
        **counters,
        **(stats or {}),
    )


@on_records_thread
def save_inputs(record_id: Any, inputs: list[Any]) -> None:
    StreamSession.objects.filter(pk=record_id).update(inputs=inputs)


@on_records_thread
def find(stream: str, webrtc_id: str) -> StreamSession | None:
    """The newest record of this id on this stream (live first)."""
    qs = StreamSession.objects.filter(stream=stream, webrtc_id=webrtc_id)
    return qs.filter(state__in=ACTIVE_STATES).first() or qs.order_by("-created_at").first()


async def find_or_refuse(stream: str, webrtc_id: str, *, live: bool) -> StreamSession:
    """The session's record (``find``), or ``UnknownSession`` (404 ``unknown_connection``)
    when there is none or, with ``live=True``, when it has ended.

    The one lookup of a session by the requests that touch it (input and output hooks,
    tickets, a hang-up, the control bus). ``live=False`` serves those that still answer
    for an ended session (an SSE stream of one that ended just ends).
    """
    record = await find(stream, webrtc_id)
    if record is None or (live and not record.is_live):
        raise UnknownSession(webrtc_id)
    return record


@on_records_thread
def heartbeat(beats: dict[Any, dict[str, Any]]) -> list[Any]:
    """Refresh the lease and counters (and any fields a failed write left behind, see
    ``Session.record_fields``) of this worker's live sessions; the ids of those whose
    record is no longer live (reaped while they ran, see ``reclaim``)."""
    now = timezone.now()
    lost = []
    for record_id, counters in beats.items():
        if not StreamSession.objects.filter(pk=record_id, state__in=ACTIVE_STATES).update(
            heartbeat_at=now, **counters
        ):
            lost.append(record_id)
    return lost


@on_records_thread
def reclaim(record_id: Any, state: str) -> bool:
    """Make a record that was reaped (``worker_lost``) while its session still ran live
    again: its worker's heartbeat was late, the session was not gone. False if it was
    closed for another reason, or another live session has taken its id since."""
    try:
        with transaction.atomic():
            return bool(
                StreamSession.objects.filter(
                    pk=record_id,
                    state=SessionState.FAILED,
                    close_reason="worker_lost",
                ).update(state=state, closed_at=None, close_reason="", heartbeat_at=timezone.now())
            )
    except IntegrityError:
        return False
