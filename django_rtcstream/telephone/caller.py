"""Call a stream the way Twilio would: a signed voice webhook, then Media Streams.

Used by ``manage.py rtcstream_call`` (FastRTC's ``fastphone()`` needs a hosted
service; this needs nothing but the server) and by the tests. The caller
plays 8 kHz audio at real time, records what the stream answers, echoes
``mark`` events back as Twilio does once audio has played, and reports timing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from django_rtcstream.media import mulaw
from django_rtcstream.telephone.twilio import PHONE_RATE, signature

FRAME = PHONE_RATE // 50  # 160 samples, 20 ms


@dataclass
class CallResult:
    """What happened on the call."""

    stream_sid: str
    call_sid: str
    received: np.ndarray
    first_audio_after: float | None  # seconds from the first sent frame to the first answer
    duration: float
    events: list[dict[str, Any]] = field(default_factory=list)
    # (seconds of caller audio sent when it arrived, "media" or the event's name), in order:
    # times measured on the caller's audio clock.
    timeline: list[tuple[float, str]] = field(default_factory=list)

    @property
    def marks(self) -> list[str]:
        return [e["mark"]["name"] for e in self.events if e.get("event") == "mark"]

    @property
    def clears(self) -> int:
        return sum(1 for e in self.events if e.get("event") == "clear")


def webhook(incoming_url: str, params: dict[str, str], auth_token: str | None) -> tuple[int, str]:
    """POST Twilio's voice webhook (signed when ``auth_token``); returns (status, body)."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if auth_token:
        headers["X-Twilio-Signature"] = signature(incoming_url, params, auth_token)
    request = urllib.request.Request(
        incoming_url, data=urllib.parse.urlencode(params).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def stream_from_twiml(twiml: str) -> tuple[str, dict[str, str]]:
    """The ``<Stream url>`` and its ``<Parameter>``s."""
    root = ET.fromstring(twiml)
    node = root.find("./Connect/Stream")
    if node is None:
        raise ValueError("the TwiML has no <Connect><Stream>")
    params = {p.get("name", ""): p.get("value", "") for p in node.findall("Parameter")}
    return node.get("url", ""), params


async def place_call(
    incoming_url: str,
    audio: np.ndarray,
    *,
    auth_token: str | None = None,
    listen: float = 2.0,
    custom_parameters: dict[str, str] | None = None,
    dtmf: list[tuple[float, str]] | None = None,
    caller: str = "+15550100",
    until_marks: int = 0,
    mark_timeout: float = 15.0,
) -> CallResult:
    """Call the stream at ``incoming_url`` and play ``audio`` (int16, 8 kHz).

    After the audio, ``listen`` seconds of silence are sent (as Twilio does while
    the caller is quiet). With ``until_marks``, the call then goes quiet, sending
    nothing, until that many marks came back (a reply ends when the output stays
    dry) or ``mark_timeout`` passed, before it hangs up.
    """
    import websockets

    call_sid = "CA" + secrets.token_hex(16)
    stream_sid = "MZ" + secrets.token_hex(16)
    params = {
        "CallSid": call_sid,
        "AccountSid": "AC" + secrets.token_hex(16),
        "From": caller,
        "To": "+15550199",
        "Direction": "inbound",
    }
    status, twiml = await asyncio.to_thread(webhook, incoming_url, params, auth_token)
    if status != 200:
        raise RuntimeError(f"the webhook answered {status}: {twiml[:200]}")
    ws_url, twiml_params = stream_from_twiml(twiml)
    headers = {"X-Twilio-Signature": signature(ws_url, {}, auth_token)} if auth_token else {}
    events: list[dict[str, Any]] = []
    timeline: list[tuple[float, str]] = []
    sent_frames = 0
    marked = asyncio.Event()
    received: list[np.ndarray] = []
    first_sent: float | None = None
    first_audio: float | None = None
    started = time.monotonic()
    async with websockets.connect(ws_url, additional_headers=headers) as ws:
        seq = 0

        async def send(event: dict[str, Any]) -> None:
            nonlocal seq
            seq += 1
            await ws.send(json.dumps({"sequenceNumber": str(seq), **event}))

        async def read() -> None:
            nonlocal first_audio
            async for raw in ws:
                event = json.loads(raw)
                timeline.append((sent_frames * 0.02, str(event.get("event"))))
                if event.get("event") == "media":
                    if first_audio is None:
                        first_audio = time.monotonic()
                    received.append(mulaw.decode(base64.b64decode(event["media"]["payload"])))
                    continue
                events.append(event)
                if until_marks and sum(e.get("event") == "mark" for e in events) >= until_marks:
                    marked.set()
                if event.get("event") == "mark":  # Twilio: the audio before it has played
                    try:
                        await send(
                            {"event": "mark", "streamSid": stream_sid, "mark": event["mark"]}
                        )
                    except websockets.ConnectionClosed:  # the call ended meanwhile
                        return

        reader = asyncio.ensure_future(read())
        await send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await send(
            {
                "event": "start",
                "streamSid": stream_sid,
                "start": {
                    "streamSid": stream_sid,
                    "callSid": call_sid,
                    "accountSid": params["AccountSid"],
                    "tracks": ["inbound"],
                    "customParameters": {**twiml_params, **(custom_parameters or {})},
                    "mediaFormat": {
                        "encoding": "audio/x-mulaw",
                        "sampleRate": PHONE_RATE,
                        "channels": 1,
                    },
                },
            }
        )
        pending_dtmf = sorted(dtmf or [])
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        first_sent = time.monotonic()
        total = len(audio) // FRAME
        for i in range(total + int(listen * 50)):
            elapsed = loop.time() - t0
            while pending_dtmf and pending_dtmf[0][0] <= elapsed:
                _, digit = pending_dtmf.pop(0)
                await send(
                    {
                        "event": "dtmf",
                        "streamSid": stream_sid,
                        "dtmf": {"track": "inbound_track", "digit": digit},
                    }
                )
            chunk = audio[i * FRAME : (i + 1) * FRAME] if i < total else np.zeros(FRAME, np.int16)
            await send(
                {
                    "event": "media",
                    "streamSid": stream_sid,
                    "media": {
                        "track": "inbound",
                        "chunk": str(i + 1),
                        "timestamp": str(i * 20),
                        "payload": base64.b64encode(mulaw.encode(chunk)).decode(),
                    },
                }
            )
            sent_frames = i + 1
            await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.02 - loop.time()))
        if until_marks:
            try:
                await asyncio.wait_for(marked.wait(), mark_timeout)
            except TimeoutError:
                pass
        await send(
            {
                "event": "stop",
                "streamSid": stream_sid,
                "stop": {"callSid": call_sid, "accountSid": params["AccountSid"]},
            }
        )
        try:
            await asyncio.wait_for(reader, 5)
        except TimeoutError:
            reader.cancel()
        except websockets.ConnectionClosed:
            pass
    return CallResult(
        stream_sid=stream_sid,
        call_sid=call_sid,
        received=np.concatenate(received) if received else np.zeros(0, np.int16),
        first_audio_after=(first_audio - first_sent) if first_audio and first_sent else None,
        duration=time.monotonic() - started,
        events=events,
        timeline=timeline,
    )


def read_audio(path: str) -> np.ndarray:
    """Any audio file -> int16 mono at 8 kHz."""
    import av

    with av.open(path) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=PHONE_RATE)
        parts = [
            f.to_ndarray()[0]
            for frame in container.decode(audio=0)
            for f in resampler.resample(frame)
        ]
        parts += [f.to_ndarray()[0] for f in resampler.resample(None)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int16)


def write_wav(path: str, samples: np.ndarray, rate: int = PHONE_RATE) -> None:
    import wave

    with wave.open(path, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.astype("<i2").tobytes())


def tone(frequency: float, seconds: float, rate: int = PHONE_RATE) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * frequency * t) * 0.5 * 32767).astype(np.int16)
