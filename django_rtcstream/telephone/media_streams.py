"""Twilio Media Streams, the WebSocket half of a call (the webhook is in ``twilio``)."""

from __future__ import annotations

import base64
import json
from typing import Any

from django_rtcstream.conf import rtc_settings
from django_rtcstream.errors import ErrorCode
from django_rtcstream.telephone.audio_socket import AudioSocketConsumer
from django_rtcstream.telephone.twilio import PHONE_RATE, public_url, stream_url, valid_signature


class TwilioMediaStreamConsumer(AudioSocketConsumer):
    """Twilio Media Streams, both ways: mu-law 8 kHz at real time, marks and clears."""

    channel_kind = "phone"

    async def connect(self) -> None:
        auth_token = rtc_settings.TWILIO_AUTH_TOKEN
        if auth_token:
            headers = {
                k.decode("latin1").lower(): v.decode("latin1")
                for k, v in self.scope.get("headers", [])
            }
            scheme = "wss" if self.scope.get("scheme") in ("wss", "https") else "ws"
            url = public_url(f"{scheme}://{headers.get('host', '')}{self.scope['path']}")
            if rtc_settings.TELEPHONE_PUBLIC_URL:
                url = stream_url(url.replace("/handler", "/incoming"))
            query = self.scope.get("query_string", b"").decode()
            if query:
                url = f"{url}?{query}"
            if not valid_signature(url, {}, headers.get("x-twilio-signature"), auth_token):
                await self.close(code=ErrorCode.INVALID_SIGNATURE.close_code)
                return
        self.marks_played: list[str] = []
        self.dtmf: list[str] = []
        self._bursts = 0
        await super().connect()

    # Twilio's events -------------------------------------------------------------------

    async def on_connected(self, data: dict[str, Any]) -> None:
        """Twilio's hello; nothing to do."""

    async def on_start(self, data: dict[str, Any]) -> None:
        if self.session is not None:
            await self.error("The call already started.")
            return
        start = data.get("start")
        if not isinstance(start, dict):
            start = {}
        self.stream_sid = data.get("streamSid") or start.get("streamSid")
        self.encoding, self.input_rate, self.output_rate = "mulaw", PHONE_RATE, PHONE_RATE
        custom = (
            start.get("customParameters")
            if isinstance(start.get("customParameters"), dict)
            else None
        )
        await self.open_session(
            self.stream_sid, phone=True, call_sid=str(start.get("callSid", ""))[:64], custom=custom
        )

    async def on_mark(self, data: dict[str, Any]) -> None:
        mark = data.get("mark")
        if not isinstance(mark, dict):
            mark = {}
        self.marks_played.append(str(mark.get("name")))
        if self.session is not None:
            self.session.send_message({"type": "log", "data": f"played:{mark.get('name')}"})

    async def on_dtmf(self, data: dict[str, Any]) -> None:
        digit = (
            (data.get("dtmf") or {}).get("digit") if isinstance(data.get("dtmf"), dict) else None
        )
        if not isinstance(digit, str) or self.session is None:
            return
        self.dtmf.append(digit)
        await self.session.call_hook("on_dtmf", digit)

    # Twilio's shapes for what we send ----------------------------------------------------

    def media_text(self, payload: bytes) -> str:
        payload_text = base64.b64encode(payload).decode("ascii")
        return (
            f'{{"event": "media", "streamSid": {json.dumps(self.stream_sid)}, '
            f'"media": {{"payload": "{payload_text}"}}}}'
        )

    def clear_message(self) -> dict[str, Any]:
        return {"event": "clear", "streamSid": self.stream_sid}

    async def on_burst_end(self) -> None:
        """Mark the end of each reply: Twilio echoes the mark when the caller heard it all."""
        self._bursts += 1
        await self.send_json(
            {
                "event": "mark",
                "streamSid": self.stream_sid,
                "mark": {"name": f"reply-{self._bursts}"},
            }
        )

    async def started(self) -> None:
        """Twilio wants nothing back at start."""

    def on_session_message(self, message: dict[str, Any]) -> None:
        # A phone has no data channel: only the end of the session matters here.
        if message["type"] == "closed":
            super().on_session_message(message)
