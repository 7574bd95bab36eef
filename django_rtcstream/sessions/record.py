"""One session's side of its ``StreamSession`` row: writes that survive a database outage.

``sessions.records`` holds the database operations; this holds what a running
session remembers about them. A write that fails because the database is away
does not fail the session: the field is left to the heartbeat
(``SessionManager._beat``), which writes it, with the counters, once the
database answers again. A close that cannot be written waits the same way,
with everything it writes: state, reason, counters, the time it closed and the
session's stats (``sessions.stats``: the last sample, history and summary).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from django.utils import timezone

from django_rtcstream.exceptions import DatabaseUnavailable
from django_rtcstream.models import SessionState
from django_rtcstream.sessions import records

# mark_closed's arguments: state, reason, counters, closed_at, stats
Closed = tuple[str, str, dict[str, int], Any, dict[str, Any]]


class RecordedStats(Protocol):
    """What the record writes of a session's stats (``sessions.stats.StatsSampler``)."""

    def record_fields(self) -> dict[str, Any]: ...

    def close_fields(self) -> dict[str, Any]: ...


class SessionRecord:
    """The record of one session, as the session writes it."""

    def __init__(self, record_id: Any, stats: RecordedStats | None = None) -> None:
        self.id = record_id
        self.stats = stats
        self.unsaved: set[str] = set()  # fields a write could not store yet
        self.connected_at: Any = None  # when the client connected (wall clock, aware)

    async def save(self, write: Awaitable[Any], *fields: str) -> None:
        """Await a record write; if the database is away, leave ``fields`` to the
        heartbeat instead of failing the session (``records`` warns once an outage)."""
        try:
            await write
        except DatabaseUnavailable:
            self.unsaved.update(fields)

    async def save_inputs(self, inputs: list[Any]) -> None:
        await self.save(records.save_inputs(self.id, inputs), "inputs")

    async def mark_connected(self) -> None:
        self.connected_at = timezone.now()
        await self.save(records.mark_connected(self.id), "connected")

    def beat_fields(self, counters: dict[str, int], inputs: list[Any]) -> dict[str, Any]:
        """What the heartbeat writes: the counters, the ``unsaved`` fields' values, and
        the latest stats sample and history when there is a new one."""
        fields: dict[str, Any] = dict(counters)
        if "inputs" in self.unsaved:
            fields["inputs"] = list(inputs)
        if "connected" in self.unsaved:
            fields.update(state=SessionState.CONNECTED, connected_at=self.connected_at)
        if self.stats is not None:
            fields.update(self.stats.record_fields())
        return fields

    async def close(
        self,
        state: str,
        reason: str,
        counters: dict[str, int],
        keep_for_heartbeat: Callable[[Any, Closed], None],
    ) -> bool:
        """Write the close; False if the database is away (the heartbeat writes it)."""
        stats = self.stats.close_fields() if self.stats is not None else {}
        closed: Closed = (state, reason, counters, timezone.now(), stats)
        try:
            await records.mark_closed(self.id, *closed)
        except DatabaseUnavailable:
            # Meanwhile this worker does not reap the record, and the others wait a
            # lease after the outage.
            keep_for_heartbeat(self.id, closed)
            return False
        return True
