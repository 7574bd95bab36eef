"""Audio over a WebSocket: FastRTC's JSON protocol, an opt-in PCM16 variant, and the
base that the Twilio consumer shares.

FastRTC's protocol (``ws/<prefix>/<stream>/websocket/offer``)::

    -> {"event": "start", "websocket_id": "<id>"}           # optional: "sample_rate",
                                                             # "output_sample_rate", "encoding"
    -> {"event": "media", "media": {"payload": "<base64 mu-law>"}}
    -> {"event": "stop"}            -> {"event": "ping"}  (answered {"event": "pong"})
    <- {"event": "media", "media": {"payload": "<base64 mu-law>"}}
    <- {"type": "send_input" | "fetch_output" | "log" | "warning" | "error" | "end_stream", "data": ...}
    <- {"event": "clear"}           # the handler interrupted itself: drop what you buffered
    <- {"type": "session", "data": {"webrtc_id", "token", ...}}   # once, after start

Unlike FastRTC, the client's rates are honoured: input audio is resampled from
``sample_rate`` (default: the handler's ``input_sample_rate``, as FastRTC
assumes) and output is sent at ``output_sample_rate`` (default: the handler's).
With ``"encoding": "pcm16"`` media travels as binary frames of little-endian
16-bit samples instead, both ways.

A refused start answers FastRTC's failure body (``{"status": "failed", "meta":
{"error": ...}}``) and closes with a 44xx code naming the reason.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from typing import Any

import numpy as np
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from django_rtcstream import background, registry, safejson
from django_rtcstream.access import Requester
from django_rtcstream.conf import rtc_settings
from django_rtcstream.errors import ErrorCode
from django_rtcstream.exceptions import SignalingError, StreamNotFound
from django_rtcstream.media.socket_audio import decode
from django_rtcstream.sessions.readings import WireCounted

logger = logging.getLogger(__name__)

MAX_SECONDS_PER_FRAME = 2.0  # a single media message may carry at most this much audio
# Seconds the output must stay dry before a reply counts as finished (one Twilio mark
# per reply): shorter gaps are a late frame or a pause inside the reply, not its end.
REPLY_GAP = 0.4


class AudioSocketConsumer(WireCounted, AsyncWebsocketConsumer):  # WireCounted: bytes for stats
    """One audio session over one WebSocket, on the shared session runtime."""

    channel_kind = "websocket"
    session: Any = None
    transport: Any = None  # the session's SocketTransport, once started
    encoding = "mulaw"
    input_rate = 0
    output_rate = 0
    stream_sid: str | None = None  # Twilio's; None for FastRTC's protocol
    _reply_end: asyncio.Task[None] | None  # set while a burst's end is pending

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Read the client's messages one after the other, and close the session
        however the loop ends.

        Channels' own loop is not used: it gives every consumer a channel-layer channel
        and a second reader waiting on it (these consumers get nothing from the layer:
        the session bus reaches their session by id), and wakes both readers through
        ``asyncio.wait`` for each of the 50 media messages a second.

        ``disconnect()`` runs only when the loop reads ``websocket.disconnect``: a handler
        that raises ends the loop without it. One did whenever a client sent anything
        after ``stop`` (the answer to it raised uvicorn's ``ClientDisconnected``, which
        uvicorn swallows): the session, and its slot, stayed live until the worker stopped.
        """
        self.scope = scope
        self.channel_layer = None  # type: ignore[assignment]  # no layer: see above
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        finally:
            if self.session is not None:
                await self.disconnect(1006)

    async def dispatch(self, message: Any) -> None:
        """Media messages skip Channels' ``close_old_connections`` (a hop to the
        database thread before each one): nothing on the media path touches the ORM,
        and what does (opening and closing the session record) goes through
        ``database_sync_to_async``, which closes stale connections itself."""
        if message["type"] == "websocket.receive":
            await self.websocket_receive(message)
        else:
            await super().dispatch(message)

    async def connect(self) -> None:
        await self.accept()
        name = self.scope["url_route"]["kwargs"]["stream"]
        try:
            self.stream = registry.get_stream(name)
        except StreamNotFound as exc:
            await self.refuse(exc)
            return
        if self.stream.modality != "audio":
            await self.refuse(
                SignalingError(
                    ErrorCode.UNSUPPORTED_MODALITY,
                    f"Stream {name!r} is {self.stream.modality}; WebSocket audio needs an audio stream.",
                )
            )

    # -- sending -------------------------------------------------------------------------

    async def send_json(self, data: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(data, default=str))

    async def error(self, message: str) -> None:
        """A non-fatal complaint about one message: the session goes on."""
        await self.send_json({"type": "error", "data": message})

    async def refuse(self, exc: SignalingError) -> None:
        await self.send_json(exc.body())
        await self.close(code=exc.close_code)  # errors.ERRORS: 4000 + status, 4400 for 5xx

    def on_session_message(self, message: dict[str, Any]) -> None:
        if message["type"] == "closed":
            background.start(self._closed(), "socket close", webrtc_id=self._session_id())
        else:
            background.start(
                self._send_quietly(message), "socket message", webrtc_id=self._session_id()
            )

    async def _send_quietly(self, message: dict[str, Any]) -> None:
        try:
            await self.send_json(message)
        except Exception:  # the socket is gone; the session is closing
            pass

    def _session_id(self) -> str | None:
        return self.session.webrtc_id if self.session is not None else None

    def _player_failed(self, exc: BaseException) -> None:
        """The output could not be sent (a socket that broke mid-send): end the session."""
        logger.info("Audio socket of %s stopped sending: %r", self._session_id(), exc)
        if self.session is not None:
            self.session.request_close("client_disconnected")

    async def _closed(self) -> None:
        try:
            await self.close()
        except Exception:
            pass

    def on_clear(self) -> None:
        background.start(
            self._send_quietly(self.clear_message()), "socket clear", webrtc_id=self._session_id()
        )

    def clear_message(self) -> dict[str, Any]:
        return {"event": "clear"}

    def media_text(self, payload: bytes) -> str:
        """One outgoing media message. Written out rather than through ``json.dumps``
        (base64 needs no escaping): the encoder cost 10 us of the event loop for each
        20 ms of every session's audio."""
        payload_text = base64.b64encode(payload).decode("ascii")
        return '{"event": "media", "media": {"payload": "' + payload_text + '"}}'

    async def on_burst_end(self) -> None:
        """Called once per reply, when the handler's output has stayed dry for
        ``REPLY_GAP`` seconds (the Twilio consumer sends a mark)."""

    def _output_went_dry(self) -> None:
        if getattr(self, "_reply_end", None) is None:
            self._reply_end = background.start(
                self._end_reply_later(), "reply end", webrtc_id=self._session_id()
            )

    def _output_flows(self) -> None:
        pending, self._reply_end = getattr(self, "_reply_end", None), None
        if pending is not None:
            pending.cancel()

    async def _end_reply_later(self) -> None:
        await asyncio.sleep(REPLY_GAP)
        self._reply_end = None
        try:
            await self.on_burst_end()
        except Exception:  # the socket is gone; the session is closing
            pass

    async def play(self) -> None:
        """Send the session's output audio at real time, at the client's rate and encoding."""
        from django_rtcstream.media.socket_audio import socket_audio_out

        assert self.transport is not None and self.transport.output is not None
        async for payload in socket_audio_out(
            self.transport.output, self.output_rate, self.encoding
        ):
            if payload is None:
                self._output_went_dry()
                continue
            self._output_flows()
            if not payload:
                continue
            if self.encoding == "pcm16":
                await self.send(bytes_data=payload)
            else:
                await self.send(text_data=self.media_text(payload))

    # -- receiving -----------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        size = len(text_data or bytes_data or b"")
        if size > rtc_settings.MAX_SIGNALING_BYTES:
            await self.error(
                f"Message of {size} bytes refused: the limit is {rtc_settings.MAX_SIGNALING_BYTES}."
            )
            return
        if bytes_data is not None:
            await self.on_binary(bytes_data)
            return
        try:
            data = safejson.loads(text_data or "")
        except ValueError:
            await self.error("Messages must be JSON text (or binary PCM16 after a pcm16 start).")
            return
        if not isinstance(data, dict) or not isinstance(data.get("event"), str):
            await self.error("Messages must be JSON objects with an 'event'.")
            return
        handler = getattr(self, f"on_{data['event']}", None)
        if handler is None or data["event"] in ("binary", "session_message", "clear", "burst_end"):
            await self.error(f"Unknown event {data['event']!r}.")
            return
        await handler(data)

    async def on_ping(self, data: dict[str, Any]) -> None:
        await self.send_json({"event": "pong"})

    async def on_start(self, data: dict[str, Any]) -> None:
        if self.session is not None:
            await self.error("This socket already started a session.")
            return
        handler = self.stream.handler
        in_rate = getattr(handler, "input_sample_rate", 48000)
        out_rate = getattr(handler, "output_sample_rate", 48000)
        try:
            self.encoding = data.get("encoding", "mulaw")
            if self.encoding not in ("mulaw", "pcm16"):
                raise ValueError("encoding must be 'mulaw' or 'pcm16'")
            self.input_rate = _rate(data.get("sample_rate", in_rate))
            self.output_rate = _rate(data.get("output_sample_rate", out_rate))
        except (TypeError, ValueError) as exc:
            await self.refuse(SignalingError(ErrorCode.INVALID_START, str(exc)))
            return
        await self.open_session(data.get("websocket_id") or data.get("webrtc_id"))

    async def open_session(
        self,
        webrtc_id: Any,
        *,
        phone: bool = False,
        call_sid: str = "",
        custom: dict[str, Any] | None = None,
    ) -> None:
        from django_rtcstream.api import permissions
        from django_rtcstream.sessions.bus import check_webrtc_id
        from django_rtcstream.sessions.manager import manager
        from django_rtcstream.sessions.transport import SocketTransport

        try:
            webrtc_id = check_webrtc_id(webrtc_id)
            requester = Requester.from_scope(self.scope)
            await permissions.acheck("open", requester, self.stream)
            self.session = session = await manager().open(
                self.stream,
                webrtc_id,
                channel=self.channel_kind,
                client_address=requester.address,
                user_id=await requester.user_id(),
                call_sid=call_sid,
                inputs=self._initial_inputs(custom),
            )
        except SignalingError as exc:
            await self.refuse(exc)
            return
        self.transport = SocketTransport(
            self,
            self.channel_kind,
            input_rate=self.input_rate,
            receives=self.stream.receives_media_from_client,
            sends=self.stream.sends_media_to_client,
        )
        await session.start_socket(self.transport, phone=phone, websocket=self)
        if self.transport.output is not None:
            self._player = background.start(
                self.play(),
                "socket player",
                webrtc_id=session.webrtc_id,
                on_error=self._player_failed,
            )
        await self.started()

    def _initial_inputs(self, custom: dict[str, Any] | None) -> list[Any] | None:
        """Custom parameters named like the stream's inputs set their first values."""
        if not custom:
            return None
        known = {s.name for s in self.stream.inputs.specs}
        named = {k: v for k, v in custom.items() if k in known}
        if not named:
            return None
        try:
            return self.stream.inputs.clean_named(named, self.stream.inputs.defaults())
        except ValueError:
            logger.info("Ignoring invalid custom parameters %r", named)
            return None

    async def started(self) -> None:
        """Tell the client its session id and token (for the input and output hooks)."""
        await self.send_json(
            {
                "type": "session",
                "data": {
                    "webrtc_id": self.session.webrtc_id,
                    "token": self.session.token,
                    "input_sample_rate": self.input_rate,
                    "output_sample_rate": self.output_rate,
                    "encoding": self.encoding,
                },
            }
        )

    async def on_media(self, data: dict[str, Any]) -> None:
        if self.session is None:
            await self.error("Send 'start' before media.")
            return
        media = data.get("media")
        payload = media.get("payload") if isinstance(media, dict) else None
        if not isinstance(payload, str):
            await self.error("media.payload must be a base64 string.")
            return
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            await self.error("media.payload is not valid base64.")
            return
        if self.encoding == "pcm16":
            await self.error("This session declared pcm16: send binary frames, not media events.")
            return
        self.push(decode(raw, "mulaw"))

    async def on_binary(self, data: bytes) -> None:
        if self.session is None or self.encoding != "pcm16":
            await self.error("Binary frames carry PCM16 audio after a start with encoding 'pcm16'.")
            return
        if len(data) % 2:
            await self.error("PCM16 frames must hold whole 16-bit samples (an even byte count).")
            return
        self.push(decode(data, "pcm16"))

    def push(self, samples: np.ndarray) -> None:
        """Hand decoded input to the session (ignored in receive mode)."""
        session, transport = self.session, self.transport
        if session is None or transport is None or transport.input is None or not len(samples):
            return
        if len(samples) > MAX_SECONDS_PER_FRAME * self.input_rate:
            background.start(
                self._send_quietly(
                    {
                        "type": "error",
                        "data": (
                            f"A media message may carry at most {MAX_SECONDS_PER_FRAME:g} s of audio."
                        ),
                    }
                ),
                "socket error",
                webrtc_id=session.webrtc_id,
            )
            return
        transport.push(samples)

    async def on_stop(self, data: dict[str, Any]) -> None:
        self._stopped = True
        await self.close()

    async def disconnect(self, code: int) -> None:
        player = getattr(self, "_player", None)
        if player is not None:
            player.cancel()
        self._output_flows()  # no reply ends after the socket has
        if self.session is not None:
            session, self.session = self.session, None
            stopped = getattr(self, "_stopped", False)
            await session.close("client_stopped" if stopped else "client_disconnected")


def _rate(value: Any) -> int:
    try:
        rate = int(value)
    except OverflowError:  # JSON's Infinity (1e999) is a float that no int can hold
        raise ValueError(f"sample rates must be between 8000 and 96000 Hz, got {value!r}") from None
    if not 8000 <= rate <= 96000:
        raise ValueError(f"sample rates must be between 8000 and 96000 Hz, got {rate}")
    return rate
