"""``StreamClient``: one client session with a stream, from offer to hang-up
(see the package's docstring for what it does)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from typing import Any, TypeVar

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

from django_rtcstream.client.http import SignalingFailed, http_json
from django_rtcstream.media import ice

T = TypeVar("T")


def _keep_latest(queue: asyncio.Queue[T], item: T) -> None:
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)


class StreamClient:
    """Connect to one stream and collect what it sends back.

    Args:
        base_url: the app's HTTP prefix, e.g. ``http://127.0.0.1:8000/rtc/``; or
            several (one per worker, or a load balancer's), tried in turn when a
            draining worker asks the client to reconnect.
        stream: the stream's name.
        video, audio: tracks to send (needed for send and send-receive modes).
        signaling: ``"http"`` (FastRTC-compatible) or ``"websocket"``.
        webrtc_id: the session id to ask for (the server makes one if None).
        trickle: send the offer before ICE gathering ends and trickle candidates
            (exercises the server's early-candidate handling).
        ice_host_addresses: gather host candidates on these addresses, e.g.
            ``["127.0.0.1"]`` for a loopback-only machine.
        audio_prefetch: frames the client's audio jitter buffer holds (the
            server's low-latency buffer; None keeps aiortc's, which holds 4).
        audio_adaptive: let that hold follow the reordering on the link.
        video_marker_release: release each received video frame on its last
            packet, not one frame period later on the next frame's first.
        relay_only: gather and use relayed (TURN) candidates only. None (the
            default) follows the stream's configuration
            (``"iceTransportPolicy": "relay"``); True forces it, False ignores it.
            Raises RuntimeError at ``connect()`` if aiortc cannot honour it.
        reconnect_on_drain: on a ``draining`` message that allows it, open a new
            session (a new ``webrtc_id`` and ``token``) and close the old one once
            the new one is connected (the tracks sent move to the new one; what the
            old session sends keeps arriving until then); frames keep arriving in
            the same queues, and
            a ``{"type": "reconnected", "data": {"webrtc_id", "base_url",
            "previous"}}`` message says so. False: stay until the server closes.
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        stream: str,
        *,
        video: MediaStreamTrack | None = None,
        audio: MediaStreamTrack | None = None,
        signaling: str = "http",
        webrtc_id: str | None = None,
        trickle: bool = False,
        ice_host_addresses: list[str] | None = None,
        queue_size: int = 64,
        audio_prefetch: int | None = 1,
        audio_adaptive: bool = True,
        video_marker_release: bool = True,
        relay_only: bool | None = None,
        reconnect_on_drain: bool = True,
    ) -> None:
        if signaling not in ("http", "websocket"):
            raise ValueError("signaling must be 'http' or 'websocket'")
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("base_url must name at least one URL")
        self.base_urls = [url.rstrip("/") + "/" for url in urls]
        self.base_url = self.base_urls[0]
        self.reconnect_on_drain = reconnect_on_drain
        self.reconnects = 0
        self._reconnecting: asyncio.Task[None] | None = None
        self._drained: set[str] = set()  # sessions whose draining message was acted on
        self.stream = stream
        self.video, self.audio = video, audio
        self.signaling = signaling
        self.webrtc_id = webrtc_id
        self.trickle = trickle
        self.ice_host_addresses = ice_host_addresses
        self.audio_prefetch = audio_prefetch
        self.audio_adaptive = audio_adaptive
        self.video_marker_release = video_marker_release
        self.relay_only = relay_only
        self.config: dict[str, Any] = {}
        self.pc: RTCPeerConnection | None = None
        self.channel: Any = None
        self.video_frames: asyncio.Queue[VideoFrame] = asyncio.Queue(queue_size)
        self.audio_frames: asyncio.Queue[AudioFrame] = asyncio.Queue(queue_size)
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.received = {"video": 0, "audio": 0}
        self.connected = asyncio.Event()
        self.token: str | None = None
        self._ws: Any = None
        self._tasks: list[asyncio.Task[Any]] = []

    async def __aenter__(self) -> StreamClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def url(self, path: str) -> str:
        return f"{self.base_url}{self.stream}/{path}"

    async def connect(self, timeout: float = 15.0) -> None:
        """Negotiate and wait until the peer connection is connected."""
        if self.ice_host_addresses is not None:
            ice.install_host_addresses(self.ice_host_addresses)
        status, config = await http_json(self.url("config"))
        if status != 200:
            raise SignalingFailed(status, config)
        self.config = config
        rtc = config.get("rtc_configuration") or {}
        self.pc = pc = RTCPeerConnection(
            ice.rtc_configuration(rtc.get("iceServers", []), policy=self._policy(rtc))
        )
        self.channel = pc.createDataChannel("text")
        self.channel.on("message", self._on_channel_message)
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", lambda: self._on_state(pc))
        self._add_transceivers(config)
        await asyncio.wait_for(self._negotiate(), timeout)
        await asyncio.wait_for(self.connected.wait(), timeout)

    def _policy(self, rtc: dict[str, Any]) -> str:
        if self.relay_only is None:
            return "relay" if rtc.get("iceTransportPolicy") == "relay" else "all"
        return "relay" if self.relay_only else "all"

    def _add_transceivers(self, config: dict[str, Any]) -> None:
        assert self.pc is not None
        mode, modality = config["mode"], config["modality"]
        kinds = ["audio", "video"] if modality == "audio-video" else [modality]
        for kind in kinds:
            track = self.audio if kind == "audio" else self.video
            if mode == "receive":
                self.pc.addTransceiver(kind, direction="recvonly")
            elif track is None:
                raise ValueError(f"Stream {self.stream!r} is {mode}: give a {kind} track")
            elif mode == "send":
                self.pc.addTransceiver(track, direction="sendonly")
            else:
                self.pc.addTrack(track)

    async def _negotiate(self) -> None:
        assert self.pc is not None
        offer = await self.pc.createOffer()
        if self.trickle:
            # Send the offer with no candidates, then trickle them like a browser.
            await self._set_local_without_gathering(offer)
        else:
            await self.pc.setLocalDescription(offer)
        body = {
            "sdp": self.pc.localDescription.sdp if not self.trickle else offer.sdp,
            "type": "offer",
            "webrtc_id": self.webrtc_id,
        }
        if self.signaling == "websocket":
            await self._negotiate_ws(body)
        else:
            await self._negotiate_http(body)

    async def _set_local_without_gathering(self, offer: RTCSessionDescription) -> None:
        task = asyncio.ensure_future(self.pc.setLocalDescription(offer))  # type: ignore[union-attr]
        self._trickle_task = task

    async def _trickle_candidates(self, send: Any) -> None:
        await self._trickle_task
        assert self.pc is not None
        from django_rtcstream.media.ice import local_candidates

        for candidate in local_candidates(self.pc):
            await send(candidate)

    async def _negotiate_http(self, body: dict[str, Any]) -> None:
        offer_url = self.url("webrtc/offer")
        if self.trickle:
            if body["webrtc_id"] is None:
                import secrets

                body["webrtc_id"] = secrets.token_urlsafe(12)

            async def send(candidate: dict[str, Any]) -> None:
                status, reply = await http_json(
                    offer_url,
                    {
                        "type": "ice-candidate",
                        "candidate": candidate,
                        "webrtc_id": body["webrtc_id"],
                    },
                )
                if status != 200:
                    raise SignalingFailed(status, reply)

            # Candidates race the offer, as a browser's do.
            trickle = asyncio.ensure_future(self._trickle_candidates(send))
            status, reply = await http_json(offer_url, body)
            await trickle
        else:
            status, reply = await http_json(offer_url, body)
        if status != 200:
            raise SignalingFailed(status, reply)
        self.webrtc_id = reply["webrtc_id"]
        self.token = reply.get("token")
        await self.pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))  # type: ignore[union-attr]

    async def _negotiate_ws(self, body: dict[str, Any]) -> None:
        import websockets

        config_url = self.config["urls"]["websocket"]
        from urllib.parse import urlsplit

        from websockets.typing import Origin

        parts = urlsplit(self.base_url)
        self._ws = await websockets.connect(
            config_url, max_size=2**22, origin=Origin(f"{parts.scheme}://{parts.netloc}")
        )
        await self._ws.send(json.dumps(body))
        if self.trickle:

            async def send(candidate: dict[str, Any]) -> None:
                await self._ws.send(json.dumps({"type": "ice-candidate", "candidate": candidate}))

            await self._trickle_candidates(send)
        while True:
            reply = json.loads(await self._ws.recv())
            if reply.get("type") == "answer":
                break
            if reply.get("type") == "failed":
                raise SignalingFailed(int(reply.get("meta", {}).get("status", 400)), reply)
            await self.messages.put(reply)
        self.webrtc_id = reply["webrtc_id"]
        self.token = reply.get("token")
        await self.pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))  # type: ignore[union-attr]
        self._tasks.append(asyncio.ensure_future(self._read_ws()))

    async def _read_ws(self) -> None:
        try:
            async for raw in self._ws:
                message = {"via": "websocket", **json.loads(raw)}
                self._watch_drain(message)
                await self.messages.put(message)
        except Exception:
            return

    def _on_channel_message(self, message: Any) -> None:
        try:
            data = json.loads(message)
        except (TypeError, ValueError):
            data = {"type": "raw", "data": message}
        message = {"via": "datachannel", **data}
        self._watch_drain(message)
        self.messages.put_nowait(message)

    # -- draining servers ------------------------------------------------------------

    def _watch_drain(self, message: dict[str, Any]) -> None:
        """A ``draining`` message: reconnect if the stream allows it (once a session)."""
        if message.get("type") != "draining" or not self.reconnect_on_drain:
            return
        data = message.get("data")
        if not isinstance(data, dict):
            data = {}
        if not data.get("reconnect") or not self.webrtc_id or self.webrtc_id in self._drained:
            return
        self._drained.add(self.webrtc_id)
        if self._reconnecting is None or self._reconnecting.done():
            seconds = float(data.get("seconds") or 0) or 10.0
            self._reconnecting = asyncio.ensure_future(self._reconnect(seconds))

    async def _reconnect(self, seconds: float) -> None:
        """Connect a new session (the next URL first, then the others, the draining one
        last), then hang the old one up; within ``seconds`` (the drain's grace)."""
        old = (self.base_url, self.pc, self.channel, self._ws, self._tasks)
        old_ids = (self.webrtc_id, self.token, self.connected)
        start = self.base_urls.index(self.base_url) if self.base_url in self.base_urls else 0
        order = self.base_urls[start + 1 :] + self.base_urls[: start + 1]
        deadline = time.monotonic() + seconds
        # The tracks move to the new connection: one track read by two senders would
        # hand each every other frame (and a paced track would run ahead of real time).
        moved = [(sender, sender.track) for sender in (old[1].getSenders() if old[1] else [])]
        for sender, _ in moved:
            sender.replaceTrack(None)
        connected = False
        while not connected and time.monotonic() < deadline:
            for url in order:
                self.base_url, self._ws, self._tasks = url, None, []
                self.webrtc_id, self.token, self.connected = None, None, asyncio.Event()
                try:
                    await self.connect(timeout=max(1.0, min(10.0, deadline - time.monotonic())))
                    connected = True
                    break
                except Exception:  # refused (503 draining), unreachable, timed out
                    await self._close_connection(self.pc, self._ws, self._tasks, None, None)
            if not connected:
                await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        if not connected:  # stay on the draining worker until it closes the session
            for sender, track in moved:
                sender.replaceTrack(track)
            self.base_url, self.pc, self.channel, self._ws, self._tasks = old
            self.webrtc_id, self.token, self.connected = old_ids
            return
        self.reconnects += 1
        await self.messages.put(
            {
                "via": "client",
                "type": "reconnected",
                "data": {
                    "webrtc_id": self.webrtc_id,
                    "base_url": self.base_url,
                    "previous": old_ids[0],
                },
            }
        )
        old_base, old_pc, _, old_ws, old_tasks = old
        await self._close_connection(old_pc, old_ws, old_tasks, old_ids[0], old_ids[1], old_base)

    async def _close_connection(
        self,
        pc: RTCPeerConnection | None,
        ws: Any,
        tasks: list[asyncio.Task[Any]],
        webrtc_id: str | None,
        token: str | None,
        base_url: str | None = None,
    ) -> None:
        """Hang up one connection (not necessarily the current one)."""
        for task in tasks:
            task.cancel()
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        elif token and webrtc_id and pc is not None and base_url is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    http_json(
                        f"{base_url}{self.stream}/webrtc/offer",
                        {"type": "close", "webrtc_id": webrtc_id, "token": token},
                    ),
                    2,
                )
        if pc is not None:
            await pc.close()

    def _on_track(self, track: MediaStreamTrack) -> None:
        from django_rtcstream.media import jitter

        jitter.install_on_track(
            self.pc, track, self.audio_prefetch, self.audio_adaptive, self.video_marker_release
        )
        self._tasks.append(asyncio.ensure_future(self._collect(track)))

    async def _collect(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                self.received[track.kind] += 1
                if isinstance(frame, VideoFrame):
                    _keep_latest(self.video_frames, frame)
                elif isinstance(frame, AudioFrame):
                    _keep_latest(self.audio_frames, frame)
        except MediaStreamError:
            return

    async def _on_state(self, pc: RTCPeerConnection) -> None:
        if pc is self.pc and pc.connectionState == "connected":
            self.connected.set()

    async def next_message(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next message of ``type == kind`` (others are dropped)."""

        async def wait() -> dict[str, Any]:
            while True:
                message = await self.messages.get()
                if message.get("type") == kind:
                    return message

        return await asyncio.wait_for(wait(), timeout)

    async def set_input(self, **values: Any) -> dict[str, Any]:
        """Change the session's inputs through the input hook (with the session token)."""
        status, reply = await http_json(
            self.url("input"), {"webrtc_id": self.webrtc_id, "token": self.token, **values}
        )
        if status != 200:
            raise SignalingFailed(status, reply)
        answer: dict[str, Any] = reply  # the input hook answers a JSON object
        return answer

    async def hang_up(self) -> None:
        """Ask the server to close the session now (instead of waiting for ICE to notice)."""
        if self.webrtc_id and self.signaling == "http":
            await http_json(
                self.url("webrtc/offer"),
                {"type": "close", "webrtc_id": self.webrtc_id, "token": self.token},
            )
        await self.close()

    async def close(self) -> None:
        """Hang up: over HTTP signaling, tell the server first.

        Closing the peer connection alone relies on one DTLS close_notify
        datagram; if it is lost, the server finds out only when ICE consent
        expires (~30 s), and the session holds its slot until then.
        """
        reconnecting, self._reconnecting = self._reconnecting, None
        if reconnecting is not None and not reconnecting.done():
            reconnecting.cancel()
            with contextlib.suppress(BaseException):
                await reconnecting
        for task in self._tasks:
            task.cancel()
        if self._ws is not None:
            await self._ws.close()  # the session lives as long as the socket
        elif (
            self.token
            and self.webrtc_id
            and self.pc is not None
            and self.pc.connectionState not in ("closed", "failed")
        ):
            with contextlib.suppress(Exception):  # best effort: the pc closes anyway
                await asyncio.wait_for(
                    http_json(
                        self.url("webrtc/offer"),
                        {"type": "close", "webrtc_id": self.webrtc_id, "token": self.token},
                    ),
                    2,
                )
        if self.pc is not None:
            await self.pc.close()
