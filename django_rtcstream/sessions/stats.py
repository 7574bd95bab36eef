"""Live network and media figures of a session, sampled every ``STATS_INTERVAL`` seconds.

Why: when a call sounds bad, the first question is whether the network, the
client or the handler is to blame. A session's sampler reads aiortc's
``RTCPeerConnection.getStats()`` (WebRTC) or the socket's own byte counters
(FastRTC's audio WebSocket, Twilio), adds the session's frame counters, and
keeps:

- ``latest``: the newest sample, written to the record by the heartbeat and,
  for clients that asked (``{"type": "stats", "data": true}`` on the data
  channel), sent as a ``{"type": "stats", "data": sample}`` message;
- ``history``: the last ``STATS_HISTORY`` samples of the charted figures,
  column by column (compact JSON for the admin's charts);
- ``summary``: the median and the worst value of every figure over the whole
  session, written when it closes.

Where the figures come from (aiortc 1.x; a figure aiortc does not give is None,
never a guess):

- ``rtt_ms``: ``remote-inbound-rtp.roundTripTime``, which aiortc's sender
  computes from the client's RTCP receiver reports (LSR/DLSR of our sender
  reports; both ends report every 0.5-1.5 s). Only a session whose server sends
  media (send-receive, receive) has a sender, so send-only sessions have none.
- ``jitter_in_ms``, ``packets_lost_in``, ``loss_in``: ``inbound-rtp`` of the
  server's receivers (the client's media as it arrives); the loss fraction is
  over the last interval (lost / expected).
- ``jitter_out_ms``, ``packets_lost_out``, ``loss_out``: ``remote-inbound-rtp``,
  what the client reports about the server's media (``fractionLost`` / 256, over
  its last report interval).
- ``bitrate_in_kbps``, ``bitrate_out_kbps``: the byte counters of the DTLS
  transport (RTP, RTCP and the data channel: what the link carries), or of the
  WebSocket (messages as sent, JSON and base64 included), between two samples.
- ``frames_in``, ``frames_out``: the session's own counters (frames handed to
  the handler, frames it produced); ``fps_in``, ``fps_out`` their rates.
  ``frames_decoded``: video frames out of aiortc's decoder (the handler may see
  fewer: a slow one gets the latest frame). ``frames_dropped``: frames the
  server dropped (stale video frames, audio the jitter buffer shed to catch up,
  socket audio a slow handler fell behind on).
- ``audio_level_in``: the client's audio level in dBov (-127 silence, 0 full
  scale) from the RFC 6464 header extension of the newest packet the jitter
  buffer holds (browsers and aiortc send it); read at sample time, so the media
  path pays nothing for it.

Not available: frames the *client* decoded or dropped (aiortc parses no RTCP XR
or client-side reports), the level of the audio the server sends, RTT of
send-only WebRTC sessions and of socket sessions (neither FastRTC's protocol
nor Twilio's gives one), and packet loss on sockets (TCP retransmits).

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
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django_rtcstream.conf import rtc_settings

if TYPE_CHECKING:
    from django_rtcstream.sessions.runtime import Session

logger = logging.getLogger(__name__)

#: Every figure of a sample, in the order the API documents them.
FIGURES: tuple[str, ...] = (
    "rtt_ms",
    "jitter_in_ms",
    "jitter_out_ms",
    "packets_lost_in",
    "packets_lost_out",
    "loss_in",
    "loss_out",
    "bitrate_in_kbps",
    "bitrate_out_kbps",
    "bytes_in",
    "bytes_out",
    "frames_in",
    "frames_out",
    "frames_decoded",
    "frames_dropped",
    "fps_in",
    "fps_out",
    "audio_level_in",
)

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

# RTP clock rates by kind when the negotiated codec cannot be read (opus, video).
DEFAULT_CLOCK = {"audio": 48000, "video": 90000}


class WireCounters:
    """Bytes and messages a socket carried; ``WireCounted`` consumers keep one."""

    __slots__ = ("bytes_in", "bytes_out", "messages_in", "messages_out")

    def __init__(self) -> None:
        self.bytes_in = self.bytes_out = self.messages_in = self.messages_out = 0


class WireCounted:
    """Mixin for a Channels WebSocket consumer: counts what goes over the socket.

    Put it before ``AsyncWebsocketConsumer`` in the bases. Counting is two
    additions per message; the sampler reads the totals.
    """

    wire: WireCounters

    def _wire(self) -> WireCounters:
        wire = self.__dict__.get("wire")
        if wire is None:
            wire = self.__dict__["wire"] = WireCounters()
        return wire

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        wire = self._wire()
        wire.messages_in += 1
        text, data = message.get("text"), message.get("bytes")
        wire.bytes_in += len(text.encode()) if text is not None else len(data or b"")
        await super().websocket_receive(message)  # type: ignore[misc]

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        wire = self._wire()
        if text_data is not None or bytes_data is not None:
            wire.messages_out += 1
            wire.bytes_out += len(text_data.encode()) if text_data is not None else len(bytes_data)  # type: ignore[arg-type]
        await super().send(text_data=text_data, bytes_data=bytes_data, close=close)  # type: ignore[misc]


class Reading:
    """Counters and instant values read at one moment (what a sample is computed from)."""

    __slots__ = (
        "at",
        "audio_level_in",
        "bytes_in",
        "bytes_out",
        "frames_decoded",
        "frames_dropped",
        "frames_in",
        "frames_out",
        "jitter_in_ms",
        "jitter_out_ms",
        "loss_out",
        "lost_in",
        "lost_out",
        "received_in",
        "rtt_ms",
    )

    def __init__(self) -> None:
        self.at = time.monotonic()
        self.bytes_in: int | None = None
        self.bytes_out: int | None = None
        self.received_in: int | None = None
        self.lost_in: int | None = None
        self.lost_out: int | None = None
        self.frames_in = 0
        self.frames_out = 0
        self.frames_decoded: int | None = None
        self.frames_dropped = 0
        self.rtt_ms: float | None = None
        self.jitter_in_ms: float | None = None
        self.jitter_out_ms: float | None = None
        self.loss_out: float | None = None
        self.audio_level_in: float | None = None


def _rate(now: int | None, before: int | None, seconds: float, scale: float) -> float | None:
    if now is None or before is None or seconds <= 0:
        return None
    return round(max(0, now - before) * scale / seconds, 2)


def _worst(values: Iterable[float | None], higher: bool = True) -> float | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return max(present) if higher else min(present)


def make_sample(now: Reading, before: Reading | None) -> dict[str, Any]:
    """One sample: the figures of ``FIGURES`` from two readings (rates need both)."""
    seconds = now.at - before.at if before is not None else 0.0
    prev = before or Reading()
    loss_in = None
    if now.received_in is not None and prev.received_in is not None and before is not None:
        lost = max(0, (now.lost_in or 0) - (prev.lost_in or 0))
        got = max(0, now.received_in - prev.received_in)
        loss_in = round(lost / (lost + got), 4) if lost + got else 0.0
    return {
        "t": round(time.time(), 3),
        "rtt_ms": now.rtt_ms,
        "jitter_in_ms": now.jitter_in_ms,
        "jitter_out_ms": now.jitter_out_ms,
        "packets_lost_in": now.lost_in,
        "packets_lost_out": now.lost_out,
        "loss_in": loss_in,
        "loss_out": now.loss_out,
        "bitrate_in_kbps": _rate(now.bytes_in, prev.bytes_in, seconds, 8 / 1000),
        "bitrate_out_kbps": _rate(now.bytes_out, prev.bytes_out, seconds, 8 / 1000),
        "bytes_in": now.bytes_in,
        "bytes_out": now.bytes_out,
        "frames_in": now.frames_in,
        "frames_out": now.frames_out,
        "frames_decoded": now.frames_decoded,
        "frames_dropped": now.frames_dropped,
        "fps_in": _rate(now.frames_in, prev.frames_in if before else None, seconds, 1),
        "fps_out": _rate(now.frames_out, prev.frames_out if before else None, seconds, 1),
        "audio_level_in": now.audio_level_in,
    }


def _clock_rates(pc: Any) -> dict[str, int]:
    """RTP clock rate per kind, from the negotiated codecs (jitter is in RTP units)."""
    rates = dict(DEFAULT_CLOCK)
    for transceiver in pc.getTransceivers():
        codecs = getattr(transceiver, "_codecs", None) or []
        for codec in codecs:
            rate = getattr(codec, "clockRate", None)
            if rate and not getattr(codec, "mimeType", "").lower().endswith("/rtx"):
                rates[transceiver.kind] = int(rate)
                break
    return rates


def _packet_level(buffer: Any) -> float | None:
    """The audio level (dBov) in the newest packet an ``AudioJitterBuffer`` holds."""
    packets = getattr(buffer, "_packets", None)
    if not packets:
        return None
    newest = getattr(buffer, "_newest", None)
    packet = packets.get(newest) or next(iter(packets.values()))
    level = getattr(getattr(packet, "extensions", None), "audio_level", None)
    if not level:
        return None
    return -float(level[1])


async def read_webrtc(session: Session, reading: Reading) -> None:
    """Fill ``reading`` from the session's peer connection (``getStats()``)."""
    pc = session.pc
    if pc is None:
        return
    # What pc.getStats() gathers, read one by one: none of these awaits suspends, so a
    # sample runs in one go (no tasks, and its cost can be measured; see bench/README).
    report: dict[str, Any] = {}
    for transceiver in pc.getTransceivers():
        report.update(await transceiver.sender.getStats())
        report.update(await transceiver.receiver.getStats())
    rates = _clock_rates(pc)
    rtts, jitter_in, jitter_out, losses_out = [], [], [], []
    received = lost_in = lost_out = 0
    inbound = remote_inbound = False
    for stat in report.values():
        kind = stat.type
        if kind == "transport":
            reading.bytes_in = (reading.bytes_in or 0) + stat.bytesReceived
            reading.bytes_out = (reading.bytes_out or 0) + stat.bytesSent
        elif kind == "inbound-rtp":
            inbound = True
            received += stat.packetsReceived
            lost_in += max(0, stat.packetsLost)
            jitter_in.append(stat.jitter * 1000 / rates.get(stat.kind, 90000))
        elif kind == "remote-inbound-rtp":
            remote_inbound = True
            lost_out += max(0, stat.packetsLost)
            jitter_out.append(stat.jitter * 1000 / rates.get(stat.kind, 90000))
            losses_out.append(stat.fractionLost / 256)
            if stat.roundTripTime is not None:
                rtts.append(stat.roundTripTime * 1000)
    if inbound:
        reading.received_in, reading.lost_in = received, lost_in
    if remote_inbound:
        reading.lost_out = lost_out
    reading.rtt_ms = _round(_worst(rtts), 3)
    reading.jitter_in_ms = _round(_worst(jitter_in), 2)
    reading.jitter_out_ms = _round(_worst(jitter_out), 2)
    reading.loss_out = _round(_worst(losses_out), 4)
    reading.audio_level_in = _packet_level(session.jitter_buffer)
    latest = session._latest_video
    if latest is not None:
        reading.frames_decoded = latest.received


def read_socket(session: Session, reading: Reading) -> None:
    """Fill ``reading`` from the consumer's ``WireCounters`` (WebSocket and phone)."""
    from django_rtcstream.handlers import _current_context

    context = session.context.get(_current_context)
    wire = getattr(getattr(context, "websocket", None), "wire", None)
    if isinstance(wire, WireCounters):
        reading.bytes_in, reading.bytes_out = wire.bytes_in, wire.bytes_out


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


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

    The session creates it, calls ``start()`` once it is admitted, puts
    ``record_fields()`` in each heartbeat and ``close_fields()`` in its
    closing write. With ``STATS_INTERVAL`` 0 it does nothing and writes
    nothing.
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

    def start(self) -> None:
        """Start sampling (a task of the session, cancelled when it closes)."""
        if self.enabled:
            self.session.spawn(self._run(), "stats")

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
        session = self.session
        reading = Reading()
        reading.frames_in, reading.frames_out = session.frames_in, session.frames_out
        if session.pc is not None:
            await read_webrtc(session, reading)
        else:
            read_socket(session, reading)
        dropped = 0
        for part in (session._latest_video, session.jitter_buffer, session.audio_input):
            dropped += int(getattr(part, "dropped", 0) or 0)
        reading.frames_dropped = dropped
        return reading

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
