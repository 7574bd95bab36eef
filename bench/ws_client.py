"""The benchmark's audio WebSocket client: FastRTC's protocol, the marker audio pre-encoded.

Run through ``bench/client.py`` with ``"client": "ws"`` (same JSON lines, same
report per session). Each session opens ``<base>/<stream>/websocket/offer`` as
a WebSocket (ws://), sends ``{"event": "start", "websocket_id": id}``, then one
``{"event": "media", "media": {"payload": <base64 mu-law>}}`` every 20 ms at
48 kHz (the echo handler's rate, which FastRTC assumes for its input) and
reads the ``media`` events that come back. The messages are built once per
process (the marker's 144-frame period, mu-law and base64 done up front), so
sending costs one ``send_str`` per frame.

Round trip: as over WebRTC, from the time the message carrying a burst was
handed to the socket to its onset in the returned audio (message arrival plus
the onset's offset in it). Sampled sessions run the marker detector; the others
only find burst onsets (a loud chunk after a quiet one) to count bursts back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import sys
import time
from typing import Any

import aiohttp
import numpy as np

from bench.markers import (
    BURST_EVERY,
    BURST_IDS,
    FRAME_SAMPLES,
    SAMPLE_RATE,
    AudioDetector,
    AudioMarker,
)
from django_rtcstream.media import mulaw

LOOP = BURST_EVERY * BURST_IDS  # the audio marker's period, in 20 ms frames
LOUD = 0.08 * 32768

now = time.monotonic


def encoded_messages() -> list[str]:
    """The marker's period as ready-to-send ``media`` messages (mu-law, base64, JSON)."""
    marker = AudioMarker()
    out = []
    for n in range(LOOP):
        frame, _ = marker.frame(n)
        payload = base64.b64encode(mulaw.encode(frame.to_ndarray().reshape(-1))).decode()
        out.append(json.dumps({"event": "media", "media": {"payload": payload}}))
    return out


class WsTrack:
    """What the detector and the report need of a "track": burst send times."""

    def __init__(self) -> None:
        self.sent: list[float] = []
        self.frames = 0


class WsSession:
    def __init__(self, sampled: bool) -> None:
        self.kind = "audio"
        self.sampled = sampled
        self.track = WsTrack()
        self.detector = AudioDetector(self.track.sent) if sampled else None
        self.onsets: list[float] = []  # not sampled: arrival of each loud chunk after quiet
        self._quiet = True
        self.t_offer: float | None = None
        self.t_connected: float | None = None
        self.t_first: float | None = None
        self.error: str | None = None
        self.closed = False
        self.ws: Any = None
        self.tasks: list[asyncio.Task] = []

    def on_media(self, payload: str, t: float) -> None:
        samples = mulaw.decode(base64.b64decode(payload))
        if self.detector is not None:
            before = len(self.detector.arrivals)
            self.detector.feed_samples(samples.astype(np.float32), SAMPLE_RATE, t)
            if self.t_first is None and len(self.detector.arrivals) > before:
                self.t_first = self.detector.arrivals[before][1]
            return
        loud = bool(np.abs(samples).max() > LOUD) if len(samples) else False
        if loud and self._quiet:
            self.onsets.append(t)
        self._quiet = not loud

    def report(self, window: tuple[float, float], grace: float) -> dict[str, Any]:
        start, end = window
        sent = self.track.sent
        arrivals = dict(self.detector.arrivals) if self.detector else {}
        out: dict[str, Any] = {
            "error": self.error,
            "signaling": None,
            "connected": None
            if self.t_offer is None or self.t_connected is None
            else round(self.t_connected - self.t_offer, 5),
            "first_frame": None
            if self.t_offer is None or self.t_first is None
            else round(self.t_first - self.t_offer, 5),
            "sent": 0,
            "returned": 0,
            "rt": [],
            "unflipped": 0,
            "unreadable": 0,
            "unidentified": self.detector.unknown if self.detector else 0,
        }
        for index, t_sent in enumerate(sent):
            if not start <= t_sent < end:
                continue
            out["sent"] += 1
            t_back = arrivals.get(index)
            if t_back is not None and t_back <= end + grace:
                out["returned"] += 1
                out["rt"].append([round(t_sent - start, 4), round(t_back - t_sent, 5)])
        out["expected"] = max(out["sent"], round((end - start) * 50 / BURST_EVERY) - 1)
        out["ended_early"] = (sent[-1] if sent else 0.0) < end - 0.5 or self.closed
        if self.detector is None:
            out["counted"] = [
                round(t - start, 4) for t in self.onsets if start - 2 <= t <= end + grace
            ]
            last = self.onsets[-1] if self.onsets else None
        else:
            last = max(arrivals.values()) if arrivals else None
        out["stalled"] = bool(last is None or last < end - 1.0)
        return out


async def run_session(
    session: WsSession, http: aiohttp.ClientSession, url: str, origin: str, messages: list[str]
) -> None:
    session.t_offer = now()
    ws = await http.ws_connect(url, headers={"Origin": origin}, max_msg_size=1 << 22)
    session.ws = ws
    await ws.send_str(json.dumps({"event": "start", "websocket_id": secrets.token_urlsafe(12)}))
    session.t_connected = now()

    async def send() -> None:
        start = now()
        n = 0
        while not ws.closed:
            delay = start + n * 0.02 - now()
            if delay > 0:
                await asyncio.sleep(delay)
            if n % BURST_EVERY == 0:
                session.track.sent.append(now())
            session.track.frames = n
            await ws.send_str(messages[n % LOOP])
            n += 1

    async def receive() -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            t = now()
            data = json.loads(message.data)
            if data.get("event") == "media":
                session.on_media(data["media"]["payload"], t)
            elif data.get("status") == "failed" or data.get("type") == "error":
                session.error = f"server: {str(data)[:200]}"
        session.closed = True

    session.tasks = [asyncio.ensure_future(send()), asyncio.ensure_future(receive())]


async def main(spec: dict[str, Any], _session_class: Any = None) -> None:
    import psutil

    stream = spec["stream"]
    sampled = spec.get("sampled") or [True] * len(spec["bases"])
    sessions = [WsSession(s) for s in sampled]
    messages = encoded_messages()
    assert len(messages[0]) > FRAME_SAMPLES  # 960 mu-law bytes in base64
    print(json.dumps({"event": "loaded"}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    timeout = aiohttp.ClientTimeout(total=None, connect=20)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def start(i: int, session: WsSession, base: str) -> None:
            await asyncio.sleep(i * spec.get("stagger", 0.0))
            origin = base.split("/", 3)
            url = base.replace("http://", "ws://", 1) + f"/{stream}/websocket/offer"
            try:
                await run_session(session, http, url, "/".join(origin[:3]), messages)
            except Exception as exc:
                session.error = f"{type(exc).__name__}: {exc}"[:300]

        await asyncio.gather(
            *(start(i, s, b) for i, (s, b) in enumerate(zip(sessions, spec["bases"], strict=True)))
        )
        ok = sum(1 for s in sessions if s.error is None)
        print(
            json.dumps({"event": "connected", "ok": ok, "failed": len(sessions) - ok, "t": now()}),
            flush=True,
        )
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        command = json.loads(line or "{}")
        if "window" not in command:
            window, grace = (now(), now()), 0.0
        else:
            window, grace = tuple(command["window"]), float(command.get("grace", 1.0))
        me = psutil.Process()
        await asyncio.sleep(max(0.0, window[0] - now()))
        cpu0 = sum(me.cpu_times()[:2])
        await asyncio.sleep(max(0.0, window[1] - now()))
        cpu1 = sum(me.cpu_times()[:2])
        await asyncio.sleep(max(0.0, window[1] + grace - now()))
        reports = [s.report(window, grace) for s in sessions]
        for s in sessions:
            for task in s.tasks:
                task.cancel()
            if s.ws is not None:
                try:
                    await asyncio.wait_for(s.ws.close(), 5)
                except Exception:
                    pass
    print(
        json.dumps({"event": "result", "sessions": reports, "client_cpu": round(cpu1 - cpu0, 4)}),
        flush=True,
    )
