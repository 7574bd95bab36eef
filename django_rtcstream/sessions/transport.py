"""How a session reaches its client: the interface, and the socket transport.

A session runs the same pipelines whatever carries its media; a transport is
the carrier. It gives the pipelines the client's media (``media_in``), takes
the output the pipelines make (``attach``), delivers the session's messages,
tells the far end to drop buffered audio (``clear``), and closes. WebRTC's is
in ``sessions.webrtc``. ``SocketTransport`` serves the audio WebSocket and
Twilio consumers (``telephone.audio_socket``): the consumer pushes samples in
and plays ``output``; it never reaches into the session.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from django_rtcstream.media.convert import AudioOutput
from django_rtcstream.media.pipelines import MediaIn, Pipelines
from django_rtcstream.media.socket_audio import SocketAudioIn
from django_rtcstream.media.tracks import PushedAudioTrack


class Transport:
    """The base: every hook is a no-op, so a transport overrides only what it carries."""

    kind = "webrtc"  # as in the record: "webrtc", "websocket" or "phone"

    def media_in(self) -> MediaIn:
        return MediaIn(tracks={}, send_kinds=set())

    def attach(self, pipelines: Pipelines) -> None:
        """The session chose its pipelines: send what they make."""

    def send(self, message: dict[str, Any], text: str) -> None:
        """Deliver one session message (``text`` is its JSON)."""

    def clear(self) -> None:
        """Barge-in: the far end drops the audio it buffered."""

    def closing(self, reason: str) -> None:
        """The session begins to close."""

    async def add_candidate(self, candidate: dict[str, Any] | None) -> None:
        """A trickled ICE candidate (only WebRTC has any)."""

    def stop_media(self) -> None:
        """The pipelines are stopped: end the outgoing tracks."""

    async def flush(self) -> None:
        """Give undelivered messages a last chance, briefly."""

    async def close(self) -> None:
        """Release the connection."""


class SocketPeer(Protocol):
    """What a socket consumer offers its session's transport."""

    def on_session_message(self, message: dict[str, Any]) -> None: ...

    def on_clear(self) -> None: ...


class SocketTransport(Transport):
    """Audio over a WebSocket (FastRTC's protocol, or a Twilio call)."""

    def __init__(
        self, peer: SocketPeer, kind: str, *, input_rate: int, receives: bool, sends: bool
    ) -> None:
        self.peer, self.kind, self.sends = peer, kind, sends
        self.input_track = PushedAudioTrack() if receives else None
        self.input = SocketAudioIn(self.input_track, input_rate) if self.input_track else None
        self.output: AudioOutput | None = None

    def media_in(self) -> MediaIn:
        tracks = {"audio": self.input_track} if self.input_track is not None else {}
        return MediaIn(tracks=dict(tracks), send_kinds={"audio"} if self.sends else set())

    def attach(self, pipelines: Pipelines) -> None:
        self.output = pipelines.audio_out

    def push(self, samples: np.ndarray) -> None:
        """Client samples (int16 mono at the client's rate); ignored in receive mode."""
        if self.input is not None and len(samples):
            self.input.push(samples)

    def send(self, message: dict[str, Any], text: str) -> None:
        self.peer.on_session_message(message)

    def clear(self) -> None:
        self.peer.on_clear()

    def closing(self, reason: str) -> None:
        self.peer.on_session_message({"type": "closed", "data": reason})
