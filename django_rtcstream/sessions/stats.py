"""Live network and media figures of a session, sampled every ``STATS_INTERVAL`` seconds.

Why: when a call sounds bad, the first question is whether the network, the
client or the handler is to blame. A session's sampler reads aiortc's
``RTCPeerConnection.getStats()`` (WebRTC) or the socket's own byte counters
(FastRTC's audio WebSocket, Twilio), adds the session's frame counters (where
each figure comes from: ``sessions.readings``), and keeps:

- ``latest``: the newest sample, written to the record by the heartbeat and,
  for clients that asked (``{"type": "stats", "data": true}`` on the data
  channel), sent as a ``{"type": "stats", "data": sample}`` message;
- ``history``: the last ``STATS_HISTORY`` samples of the charted figures,
  column by column (compact JSON for the admin's charts);
- ``summary``: the median and the worst value of every figure over the whole
  session, written when it closes (``SessionRecord.close``, which keeps it with
  the rest of the close while the database is away).

The sampler runs as one task of the session on the event loop: a sample costs
one ``getStats()`` (a few dataclasses per track) and some arithmetic, measured
in ``bench/README.md``. Nothing on the media path changes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import statistics
import time
from array import array
from collections import deque
from typing import TYPE_CHECKING, Any

from django_rtcstream.conf import rtc_settings
from django_rtcstream.media.pipeline import Work
from django_rtcstream.sessions import readings
from django_rtcstream.sessions.readings import Reading, make_sample

if TYPE_CHECKING:
    from django_rtcstream.sessions.runtime import Session

logger = logging.getLogger(__name__)

#: The figures kept in the history (the charts): rates and levels, not totals.
HISTORY_FIGURES: tuple[str, ...] = (
    "rtt_ms",
    "jitter_in_ms",
    "loss_in",
    "loss_out",
    "bitrate_in_kbps",
    "bitrate_out_kbps",
    "fps_in",
    "fps_out",
)

#: Summarised figures, with the direction that is worse: rates and levels only
#: (totals are in the latest sample).
WORSE_WHEN_HIGHER: tuple[str, ...] = (
    "rtt_ms",
    "jitter_in_ms",
    "jitter_out_ms",
    "loss_in",
    "loss_out",
)
WORSE_WHEN_LOWER: tuple[str, ...] = (
    "bitrate_in_kbps",
    "bitrate_out_kbps",
    "fps_in",
    "fps_out",
    "audio_level_in",
)

# Values per figure the summary keeps: past this, every other value is dropped and
# only every other sample is kept from then on (an even spread over the session:
# 4096 samples are 2 h 16 min at 2 s; the median stays close).
SUMMARY_VALUES = 4096


class History:
    """The last ``size`` samples of ``HISTORY_FIGURES``, column by column."""

    def __init__(self, size: int) -> None:
        self.columns: dict[str, deque[Any]] = {
            name: deque(maxlen=size) for name in ("t", *HISTORY_FIGURES)
        }

    def add(self, sample: dict[str, Any]) -> None:
        for name, column in self.columns.items():
            column.append(sample.get(name))

    def as_dict(self) -> dict[str, list[Any]]:
        return {name: list(column) for name, column in self.columns.items()}


class Summary:
    """Median and worst of each summarised figure over the whole session (bounded)."""

    def __init__(self) -> None:
        self.values: dict[str, array[float]] = {
            name: array("d") for name in (*WORSE_WHEN_HIGHER, *WORSE_WHEN_LOWER)
        }
        self.worst: dict[str, float] = {}
        self.samples = 0
        self._every = 1  # keep every n-th sample's values (doubles when full)

    def add(self, sample: dict[str, Any]) -> None:
        self.samples += 1
        keep = self.samples % self._every == 0
        for name, values in self.values.items():
            value = sample.get(name)
            if value is None:
                continue
            higher = name in WORSE_WHEN_HIGHER
            worst = self.worst.get(name)
            if worst is None or (value > worst if higher else value < worst):
                self.worst[name] = value  # exact over every sample, kept or not
            if keep:
                values.append(value)
        if any(len(v) >= SUMMARY_VALUES for v in self.values.values()):
            for name, values in self.values.items():
                self.values[name] = values[::2]
            self._every *= 2

    def as_dict(self) -> dict[str, Any]:
        figures: dict[str, Any] = {}
        for name, values in self.values.items():
            figures[name] = {
                "median": round(statistics.median(values), 4) if values else None,
                "worst": self.worst.get(name),
            }
        return {"samples": self.samples, **figures}


class StatsSampler:
    """Samples one session's figures on its loop; see the module docstring.

    The session creates it and runs its ``tasks()`` with the pipelines' once it
    is admitted; its ``SessionRecord`` puts ``record_fields()`` in each heartbeat
    and ``close_fields()`` in the closing write. With ``STATS_INTERVAL`` 0 it does
    nothing and writes nothing.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.interval = float(rtc_settings.STATS_INTERVAL or 0)
        self.latest: dict[str, Any] | None = None
        self.history = History(max(1, int(rtc_settings.STATS_HISTORY)))
        self.summary = Summary()
        self.subscribed = False  # the client asked for stats messages
        self.costs: deque[float] = deque(maxlen=256)  # seconds per sample, for the bench
        self._written = 0  # samples taken when the record was last given the stats
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def tasks(self) -> dict[str, Work]:
        """The sampling task, if sampling is on (the session cancels it when it closes)."""
        return {"stats": self._run()} if self.enabled else {}

    def on_client_message(self, data: Any) -> None:
        """``{"type": "stats", "data": true | false}`` from the client: (un)subscribe."""
        self.subscribed = bool(data) and self.enabled

    async def _run(self) -> None:
        await self.session.connected.wait()
        before = await self._read_safely()
        # A random phase: a worker's sessions do not all sample at the same moment.
        await asyncio.sleep(self.interval * (0.5 + random.random() / 2))
        while True:
            started = time.perf_counter()
            now = await self._read_safely()
            if now is not None:
                try:
                    self._add(make_sample(now, before))
                except Exception as exc:
                    self._warn(exc)
                before = now
            self.costs.append(time.perf_counter() - started)
            await asyncio.sleep(self.interval)

    async def _read_safely(self) -> Reading | None:
        try:
            return await self.read()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never the session's problem
            self._warn(exc)
            return None

    def _warn(self, exc: BaseException) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(
                "Stats of session %s could not be read (%r); the session goes on without them",
                self.session.webrtc_id,
                exc,
                exc_info=exc,
            )

    async def read(self) -> Reading:
        """The session's counters now (one ``getStats()`` for WebRTC)."""
        return await readings.read(self.session)

    def _add(self, sample: dict[str, Any]) -> None:
        self.latest = sample
        self.history.add(sample)
        self.summary.add(sample)
        if self.subscribed:
            self.session.send_message({"type": "stats", "data": sample})

    def record_fields(self) -> dict[str, Any]:
        """For the heartbeat: the latest sample and the history, if new since the last."""
        if self.latest is None or self.summary.samples == self._written:
            return {}
        self._written = self.summary.samples
        return {"stats": self.latest, "stats_history": self.history.as_dict()}

    def close_fields(self) -> dict[str, Any]:
        """For the closing write: the latest sample, the history and the summary."""
        if not self.enabled or self.latest is None:
            return {}
        return {
            "stats": self.latest,
            "stats_history": self.history.as_dict(),
            "stats_summary": self.summary.as_dict(),
        }
