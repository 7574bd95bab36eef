"""A session's network and media counters read at one moment, and a sample made of two.

``sessions.stats`` takes a ``Reading`` every ``STATS_INTERVAL`` (``read``) and turns
two of them into a sample (``make_sample``): rates need the counters of both. This
module knows where each figure lives (aiortc 1.x; a figure aiortc does not give is
None, never a guess):

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
  WebSocket (messages as sent, JSON and base64 included; ``WireCounted``), between
  two samples.
- ``frames_in``, ``frames_out``: the session's own counters (``Pipelines``: frames
  handed to the handler, frames it produced; the record's and the metrics' figures
  too); ``fps_in``, ``fps_out`` their rates. ``frames_decoded``: video frames out
  of aiortc's decoder (the handler may see fewer: a slow one gets the latest
  frame). ``frames_dropped``: frames the server dropped (``dropped_frames``: stale
  video frames, audio the jitter buffer shed to catch up, socket audio a slow
  handler fell behind on).
- ``audio_level_in``: the client's audio level in dBov (-127 silence, 0 full
  scale) from the RFC 6464 header extension of the newest packet the jitter
  buffer holds (browsers and aiortc send it); read at sample time, so the media
  path pays nothing for it.

Not available: frames the *client* decoded or dropped (aiortc parses no RTCP XR
or client-side reports), the level of the audio the server sends, RTT of
send-only WebRTC sessions and of socket sessions (neither FastRTC's protocol
nor Twilio's gives one), and packet loss on sockets (TCP retransmits).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aiortc import RTCPeerConnection

from django_rtcstream.sessions.transport import SocketTransport
from django_rtcstream.sessions.webrtc import WebRTCTransport

if TYPE_CHECKING:
    from django_rtcstream.sessions.runtime import Session

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


async def read(session: Session) -> Reading:
    """The session's counters now (one ``getStats()`` for WebRTC)."""
    reading = Reading()
    pipelines, transport = session.pipelines, session.transport
    reading.frames_in, reading.frames_out = pipelines.frames_in, pipelines.frames_out
    if isinstance(transport, WebRTCTransport) and transport.pc is not None:
        await read_webrtc(transport.pc, reading)
        reading.audio_level_in = _packet_level(transport.jitter_buffer)
        if pipelines.video_in is not None:
            reading.frames_decoded = pipelines.video_in.received
    elif isinstance(transport, SocketTransport):
        read_socket(transport, reading)
    reading.frames_dropped = sum(dropped_frames(session))
    return reading


def dropped_frames(session: Any) -> tuple[int, int, int]:
    """Input frames the server dropped before the handler saw them, by where: stale
    video frames (``pipelines.video_in``), socket audio a slow handler fell behind on
    (``transport.input_track``), WebRTC audio the jitter buffer shed to catch up
    (``transport.jitter_buffer``). The stats and the metrics both read them here."""
    transport = getattr(session, "transport", None)
    parts = (
        getattr(getattr(session, "pipelines", None), "video_in", None),
        getattr(transport, "input_track", None),
        getattr(transport, "jitter_buffer", None),
    )
    video, audio, shed = (int(getattr(part, "dropped", 0) or 0) for part in parts)
    return video, audio, shed


async def read_webrtc(pc: RTCPeerConnection, reading: Reading) -> None:
    """Fill ``reading`` from a peer connection's stats (what ``getStats()`` gathers)."""
    # Read one by one: none of these awaits suspends, so a sample runs in one go (no
    # tasks, and its cost can be measured; see bench/README).
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


def read_socket(transport: SocketTransport, reading: Reading) -> None:
    """Fill ``reading`` from the consumer's ``WireCounters`` (WebSocket and phone)."""
    wire = getattr(transport.peer, "wire", None)
    if isinstance(wire, WireCounters):
        reading.bytes_in, reading.bytes_out = wire.bytes_in, wire.bytes_out


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
