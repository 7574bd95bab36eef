"""The WebRTC transport: one aiortc peer connection, its data channel and its tracks.

It answers the offer (checking it first against the stream's kinds), collects
the client's tracks for the pipelines, puts the pipelines' output on tracks of
its own, carries the session's messages on the data channel (keeping those
sent before it opens), answers the client's ``ping`` and ``stats`` requests on
it, and reports the connection's states to the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from django_rtcstream import safejson
from django_rtcstream.conf import rtc_settings
from django_rtcstream.errors import ErrorCode
from django_rtcstream.exceptions import SignalingError
from django_rtcstream.media import ice, jitter
from django_rtcstream.media.pipeline import Work, drain
from django_rtcstream.media.pipelines import MediaIn, Pipelines
from django_rtcstream.media.sdp import read_offer
from django_rtcstream.media.tracks import PacedAudioTrack, ProducedVideoTrack
from django_rtcstream.models import SessionState
from django_rtcstream.sessions.transport import Transport

if TYPE_CHECKING:
    from django_rtcstream.sessions.stats import StatsSampler
    from django_rtcstream.stream import Stream

logger = logging.getLogger(__name__)

PENDING_MESSAGES = 64
PENDING_FLUSH_WAIT = 2.0  # seconds a session that failed early waits to tell its client why


class WebRTCHost(Protocol):
    """What the transport reports to its session."""

    webrtc_id: str
    stats: StatsSampler  # the client may ask for its samples on the data channel

    def spawn(self, coro: Work, name: str) -> asyncio.Task[Any]: ...

    def send_message(self, message: dict[str, Any]) -> None: ...

    def request_close(self, reason: str, state: str = ...) -> None: ...

    async def on_connected(self) -> None: ...


class WebRTCTransport(Transport):
    """A session's peer connection."""

    kind = "webrtc"

    def __init__(self, host: WebRTCHost, stream: Stream) -> None:
        self.host, self.stream = host, stream
        self.pc: RTCPeerConnection | None = None
        self.data_channel: Any = None
        self.connected = False
        self.jitter_buffer: Any = None  # ours on the client's audio, if installed
        self._kinds: set[str] = set()
        self._tracks: dict[str, MediaStreamTrack] = {}
        self._out_tracks: list[MediaStreamTrack] = []
        self._pending: deque[str] = deque(maxlen=PENDING_MESSAGES)
        self._channel_opened = asyncio.Event()
        self._early_candidates: list[dict[str, Any] | None] = []
        self._remote_set = False

    # -- answering --------------------------------------------------------------------------

    async def receive_offer(self, offer_sdp: str) -> MediaIn:
        """Check and set the client's offer; the client's tracks and the kinds it takes."""
        self._kinds = self._check_offer(offer_sdp)
        stream = self.stream
        self.pc = pc = RTCPeerConnection(ice.server_configuration(stream))
        pc.on("track", self._on_track)
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_state)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        except Exception as exc:
            raise SignalingError(ErrorCode.INVALID_OFFER, f"The offer was refused: {exc}") from exc
        self._remote_set = True
        for candidate in self._early_candidates:
            try:
                await pc.addIceCandidate(ice.parse_candidate(candidate))
            except Exception:
                logger.info("Ignoring a bad early candidate for %s", self.host.webrtc_id)
        self._early_candidates.clear()
        sends = self._kinds if stream.sends_media_to_client else set()
        return MediaIn(tracks=dict(self._tracks), send_kinds=sends)

    def attach(self, pipelines: Pipelines) -> None:
        """Add the tracks the server sends (before the answer is created)."""
        assert self.pc is not None
        if pipelines.audio_out is not None:
            self._add_track(PacedAudioTrack(pipelines.audio_out))
        if pipelines.video_out is not None:
            self._add_track(ProducedVideoTrack(pipelines.video_out.produce))

    def _add_track(self, track: MediaStreamTrack) -> None:
        assert self.pc is not None
        self.pc.addTrack(track)
        self._out_tracks.append(track)

    async def answer(self) -> str:
        assert self.pc is not None
        try:
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:  # aiortc took an offer it cannot answer (e.g. no direction)
            logger.info(
                "Offer for %s accepted by aiortc but not answerable: %r", self.host.webrtc_id, exc
            )
            raise SignalingError(
                ErrorCode.INVALID_OFFER,
                f"The offer was refused: it cannot be answered ({type(exc).__name__}: {exc}).",
            ) from exc
        return str(self.pc.localDescription.sdp)

    def local_candidates(self) -> list[dict[str, Any]]:
        """The server's candidates, for clients that trickle (WebSocket signaling)."""
        return ice.local_candidates(self.pc) if self.pc is not None else []

    def _check_offer(self, sdp: str) -> set[str]:
        stream = self.stream
        kinds = set(read_offer(sdp).kinds)
        extra = kinds - set(stream.kinds)
        if extra and not stream.allow_extra_tracks:
            raise SignalingError(
                ErrorCode.UNSUPPORTED_TRACK,
                f"Stream {stream.name!r} is {stream.modality}; the offer has "
                f"{', '.join(sorted(extra))} (set allow_extra_tracks=True to ignore it).",
            )
        missing = set(stream.kinds) - kinds
        if missing and kinds:
            raise SignalingError(
                ErrorCode.INVALID_OFFER,
                f"Stream {stream.name!r} is {stream.modality}; the offer has no "
                f"{', '.join(sorted(missing))} section.",
            )
        return kinds

    # -- aiortc's events ----------------------------------------------------------------------

    def _on_track(self, track: MediaStreamTrack) -> None:
        stream = self.stream
        buffer = jitter.install_on_track(
            self.pc,
            track,
            _or(stream.audio_prefetch, rtc_settings.AUDIO_PREFETCH),
            _or(stream.audio_adaptive, rtc_settings.AUDIO_ADAPTIVE),
            _or(stream.video_marker_release, rtc_settings.VIDEO_MARKER_RELEASE),
        )
        if track.kind == "audio":
            self.jitter_buffer = buffer
        if track.kind in stream.kinds and stream.receives_media_from_client:
            self._tracks[track.kind] = track
        else:
            # Unused tracks are still drained: aiortc's remote queues are unbounded.
            self.host.spawn(drain(track), f"drain-{track.kind}")

    def _on_datachannel(self, channel: Any) -> None:
        self.data_channel = channel
        while self._pending and channel.readyState == "open":
            channel.send(self._pending.popleft())
        self._channel_opened.set()

        @channel.on("message")  # type: ignore[untyped-decorator]
        def on_message(message: Any) -> None:
            if isinstance(message, str) and message.strip().startswith("{"):
                try:
                    data = safejson.loads(message)
                except ValueError:
                    return
                if isinstance(data, dict) and data.get("type") == "ping":
                    self.host.send_message({"type": "pong", "data": data.get("data")})
                elif isinstance(data, dict) and data.get("type") == "stats":  # (un)subscribe
                    self.host.stats.on_client_message(data.get("data"))

    async def _on_state(self) -> None:
        assert self.pc is not None
        state = self.pc.connectionState
        if state == "connected" and not self.connected:
            self.connected = True
            await self.host.on_connected()
        elif state == "failed":
            self.host.request_close("ice_failed", SessionState.FAILED)
        elif state == "closed":
            self.host.request_close("peer_closed")

    # -- the session's side ------------------------------------------------------------------

    def send(self, message: dict[str, Any], text: str) -> None:
        channel = self.data_channel
        if channel is not None and channel.readyState == "open":
            channel.send(text)
        else:
            self._pending.append(text)

    async def add_candidate(self, candidate: dict[str, Any] | None) -> None:
        if not self._remote_set:
            self._early_candidates.append(candidate)
            return
        if self.pc is not None:
            await self.pc.addIceCandidate(ice.parse_candidate(candidate))

    def stop_media(self) -> None:
        for track in self._out_tracks:
            track.stop()

    async def flush(self) -> None:
        if self._pending and self.pc is not None and self.data_channel is None:
            # Failed before the data channel opened (e.g. in start_up): let the client
            # read why, briefly, before the connection goes.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._channel_opened.wait(), PENDING_FLUSH_WAIT)

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()


def _or(value: Any, default: Any) -> Any:
    """A stream's own option, or the setting when the stream leaves it None."""
    return default if value is None else value
