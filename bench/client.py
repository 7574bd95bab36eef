"""The benchmark client: sessions against any of the three servers, every frame timed.

Run by ``bench/run.py`` as a subprocess, one JSON spec in argv, JSON lines out:

1. it imports, prints ``{"event": "loaded"}``, waits for one line on stdin, then
   connects its sessions (staggered) and prints ``{"event": "connected", ...}``;
2. it reads ``{"window": [start, end], "grace": g}`` from stdin (CLOCK_MONOTONIC,
   shared by all processes);
3. at ``end + grace`` it hangs up and prints ``{"event": "result", ...}``: per
   session the signaling timings, and for the frames sent inside the window
   their round trips and how many came back.

Two clients:

- ``stock``: a plain aiortc peer connection (stock jitter buffers), a data
  channel (FastRTC needs one), one marker track; POSTs the FastRTC-shaped offer
  ``{sdp, type, webrtc_id}`` to ``<base>/<stream>/webrtc/offer``. For FastRTC's
  video it calls the app's input hook right after the answer (FastRTC returns
  frames unprocessed until ``set_input`` is called).
- ``package``: django-rtcstream's own ``StreamClient`` with the same marker
  tracks, reading its ``video_frames`` / ``audio_frames`` queues.
- ``replay``: the stock client's signaling and peer connection, but the media is
  encoded once per process and replayed (``bench/replay.py``), and only the
  sessions listed in ``"sampled"`` decode what comes back to time it; the others
  count returned frames (audio: bursts) without the decoder thread's hand-offs.
- ``ws``: FastRTC's audio WebSocket protocol (``bench/ws_client.py``), mu-law at
  48 kHz: the audio marker encoded once, bursts found in what comes back.

``"link": {"max_delay", "loss", "reorder"}`` in the spec puts a jittery, lossy
UDP relay (``tests/relay.py``) between the stock client and the server: both
directions cross it. ``"client_buffer": true`` gives the stock client's audio
receiver the package's jitter buffer (what ``StreamClient`` does), for links
the package client cannot be pointed through.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import time
from typing import Any

import aiohttp
import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.markers import (
    BURST_EVERY,
    FPS,
    VIDEO_TIME_BASE,
    AudioDetector,
    AudioMarker,
    CounterUnwrap,
    VideoMarker,
)

# Loopback only, or BENCH_ICE_HOST (bench/hosts.py: the client namespace's address).
ICE_HOST = os.environ.get("BENCH_ICE_HOST", "127.0.0.1")
aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: [ICE_HOST]

now = time.monotonic


class MarkerVideoTrack(MediaStreamTrack):
    """640x480 @ 30 fps, numbered; ``sent[n]`` is when frame n was handed to the encoder."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.marker = VideoMarker()
        self.sent: list[float] = []
        self.unwrap = CounterUnwrap()
        self._start: float | None = None

    async def recv(self):
        n = len(self.sent)
        if self._start is None:
            self._start = now()
        delay = self._start + n / FPS - now()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = self.marker.frame(n)
        frame.pts = n * 90000 // FPS
        frame.time_base = VIDEO_TIME_BASE
        self.sent.append(now())
        self.unwrap.sent = n
        return frame


class MarkerAudioTrack(MediaStreamTrack):
    """48 kHz mono, 20 ms frames in real time; ``sent[b]`` is when burst b was handed over."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.marker = AudioMarker()
        self.frames = 0
        self.sent: list[float] = []
        self._start: float | None = None

    async def recv(self):
        n = self.frames
        if self._start is None:
            self._start = now()
        delay = self._start + n * 0.02 - now()
        if delay > 0:
            await asyncio.sleep(delay)
        frame, burst = self.marker.frame(n)
        self.frames += 1
        if burst is not None:
            self.sent.append(now())
        return frame


class Session:
    """One session's media and timings, whatever the client."""

    def __init__(self, kind: str, track: Any = None) -> None:
        self.kind = kind
        if track is None:
            track = MarkerVideoTrack() if kind == "video" else MarkerAudioTrack()
        self.track = track
        self.counter: Any = None  # replay, not sampled: bench.replay.ArrivalCounter
        self.received: dict[int, float] = {}  # video: frame index -> first arrival
        self.detector = AudioDetector(self.track.sent) if kind == "audio" else None
        self.gaps: list[tuple[float, int]] = []  # audio: (arrival, frames missing before it)
        self._last_pts: int | None = None
        self.unflipped = 0
        self.unreadable = 0
        self.duplicates = 0
        self.t_start: float | None = None  # before the offer (stock) / before connect (package)
        self.t_offer: float | None = None
        self.t_answer: float | None = None
        self.t_connected: float | None = None
        self.t_first: float | None = None
        self.error: str | None = None
        self.closer: Any = None

    def on_video(self, frame, t: float) -> None:
        counter, flipped = self.track.marker.read(frame)
        if counter is None:
            self.unreadable += 1
            return
        if not flipped:
            self.unflipped += 1  # the handler did not run on it
            return
        if hasattr(self.track, "index_of"):  # replayed loop: counter = position in the loop
            index = self.track.index_of(counter)
            if index is None:
                self.unreadable += 1
                return
        else:
            index = self.track.unwrap.full(counter)
        if index in self.received:
            self.duplicates += 1
            return
        self.received[index] = t
        if self.t_first is None:
            self.t_first = t

    def on_audio(self, frame, t: float) -> None:
        # The decoder stamps frames with their RTP timestamps: a jump is a frame that never
        # came out of the client's receiver (lost, or given up on by its buffer).
        if frame.pts is not None:
            if self._last_pts is not None and frame.pts > self._last_pts + frame.samples:
                self.gaps.append((t, round((frame.pts - self._last_pts) / frame.samples) - 1))
            self._last_pts = frame.pts if self._last_pts is None else max(self._last_pts, frame.pts)
        before = len(self.detector.arrivals)
        self.detector.feed(frame, t)
        if self.t_first is None and len(self.detector.arrivals) > before:
            self.t_first = self.detector.arrivals[before][1]

    def on_frame(self, frame, t: float) -> None:
        if self.kind == "video":
            self.on_video(frame, t)
        else:
            self.on_audio(frame, t)

    def arrivals(self) -> dict[int, float]:
        if self.counter is not None:
            return {}
        if self.kind == "video":
            return self.received
        return dict(self.detector.arrivals)

    def report(self, window: tuple[float, float], grace: float) -> dict[str, Any]:
        start, end = window
        sent = self.track.sent
        arrivals = self.arrivals()
        base = self.t_offer if self.t_offer is not None else self.t_start
        out: dict[str, Any] = {
            "error": self.error,
            "signaling": _diff(self.t_offer, self.t_answer),
            "connected": _diff(base, self.t_connected),
            "first_frame": _diff(base, self.t_first),
            "sent": 0,
            "returned": 0,
            "rt": [],
            "unflipped": self.unflipped,
            "unreadable": self.unreadable,
            "unidentified": self.detector.unknown if self.detector else 0,
        }
        if self.kind == "audio":
            out["gap_frames"] = sum(n for t, n in self.gaps if start <= t <= end + grace)
            out["gaps"] = sum(1 for t, _ in self.gaps if start <= t <= end + grace)
        rate = FPS if self.kind == "video" else 50 / BURST_EVERY
        last = sent[-1] if sent else 0.0
        out["ended_early"] = last < end - 0.5  # the session stopped sending (closed by the server?)
        for index, t_sent in enumerate(sent):
            if not start <= t_sent < end:
                continue
            out["sent"] += 1
            t_back = arrivals.get(index)
            if t_back is not None and t_back <= end + grace:
                out["returned"] += 1
                out["rt"].append([round(t_sent - start, 4), round(t_back - t_sent, 5)])
        # Frames a live session sends in the window; a session that died sent fewer.
        out["expected"] = max(out["sent"], round((end - start) * rate) - 1)
        if self.counter is not None:
            # Not decoded: the arrivals (audio: burst onsets) near the window, relative to its
            # start; the runner counts those inside the window shifted by the sampled round trip.
            back = self.counter.returns()
            out["counted"] = [round(t - start, 4) for t in back if start - 2 <= t <= end + grace]
            last = back[-1] if back else None
        else:
            last = max(arrivals.values()) if arrivals else None
        # Nothing came back in the window's last second: the session stalled (or was dropped).
        out["stalled"] = bool(last is None or last < end - 1.0)
        if hasattr(self.track, "keyframes"):
            out["keyframes"] = self.track.keyframes
        return out


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(b - a, 5)


async def _consume(session: Session, track: MediaStreamTrack) -> None:
    try:
        while True:
            frame = await track.recv()
            session.on_frame(frame, now())
    except MediaStreamError:
        return


async def run_stock(
    session: Session,
    http: aiohttp.ClientSession,
    base: str,
    stream: str,
    needs_input: bool,
    link: dict[str, Any] | None = None,
    client_buffer: bool = False,
    count: bool = False,
) -> None:
    session.t_start = now()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    relay = None
    if link:
        from tests.relay import JitteryRelay, host_candidate, via_relay

        relay = JitteryRelay(
            max_delay=link["max_delay"],
            loss=link["loss"],
            reorder=link.get("reorder", True),
            seed=link.get("seed", secrets.randbits(32)),
        )
        await relay.start()

    async def close() -> None:
        await pc.close()
        if relay is not None:
            relay.close()

    session.closer = close
    connected = asyncio.Event()
    pc.createDataChannel("text")
    sender = pc.addTrack(session.track)
    if hasattr(session.track, "sender"):
        session.track.sender = sender  # keyframe requests restart the replayed loop
    tasks: list[asyncio.Task] = []

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if count:
            from bench.replay import count_only

            session.counter = count_only(track)
            return
        if client_buffer:
            from django_rtcstream.media import jitter

            jitter.install_on_track(pc, track, 1)  # the package client's buffer
        tasks.append(asyncio.ensure_future(_consume(session, track)))

    @pc.on("connectionstatechange")
    def on_state() -> None:
        if pc.connectionState == "connected" and session.t_connected is None:
            session.t_connected = now()
            connected.set()

    await pc.setLocalDescription(await pc.createOffer())
    webrtc_id = secrets.token_urlsafe(12)
    sdp = pc.localDescription.sdp
    if relay is not None:
        relay.client = host_candidate(sdp)
        sdp = via_relay(sdp, relay.back_port)
    body = {"sdp": sdp, "type": "offer", "webrtc_id": webrtc_id}
    session.t_offer = now()
    async with http.post(f"{base}/{stream}/webrtc/offer", json=body) as response:
        raw = await response.read()
    try:
        reply = json.loads(raw)
    except ValueError:
        raise RuntimeError(
            f"offer failed: HTTP {response.status}, not JSON: {raw[:80]!r}"
        ) from None
    session.t_answer = now()
    if not isinstance(reply, dict) or "sdp" not in reply:
        raise RuntimeError(f"offer refused: {response.status} {str(reply)[:200]}")
    answer = reply["sdp"]
    if relay is not None:
        relay.server = host_candidate(answer)
        answer = via_relay(answer, relay.front_port)
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    if needs_input:
        async with http.post(f"{base}/{stream}/input", json={"webrtc_id": webrtc_id}) as response:
            await response.read()
    await asyncio.wait_for(connected.wait(), 20)


async def run_package(session: Session, base: str, stream: str) -> None:
    from django_rtcstream.client import StreamClient

    kwargs = {"video": session.track} if session.kind == "video" else {"audio": session.track}
    client = StreamClient(
        base + "/",
        stream,
        ice_host_addresses=[ICE_HOST],
        webrtc_id=secrets.token_urlsafe(12),
        **kwargs,
    )
    session.closer = client.hang_up
    session.t_start = now()
    await client.connect(timeout=20)
    session.t_connected = now()
    queue = client.video_frames if session.kind == "video" else client.audio_frames

    async def drain() -> None:
        while True:
            frame = await queue.get()
            session.on_frame(frame, now())

    session.drain = asyncio.ensure_future(drain())  # type: ignore[attr-defined]


async def main(spec: dict[str, Any]) -> None:
    import psutil

    kind, stream = spec["kind"], spec["stream"]
    if spec["client"] == "ws":
        from bench.ws_client import main as ws_main

        await ws_main(spec, Session)
        return
    media = None
    if spec["client"] == "replay":
        from bench.replay import ReplayAudioTrack, ReplayVideoTrack, encode_media

        media = encode_media(spec.get("video_bitrate"), video=kind == "video")
        replay = ReplayVideoTrack if kind == "video" else ReplayAudioTrack
        sessions = [Session(kind, replay(media)) for _ in spec["bases"]]
    else:
        sessions = [Session(kind) for _ in spec["bases"]]
    sampled = spec.get("sampled") or [True] * len(sessions)
    # Imports are done: say so, and connect when told (the runner waits for a quiet machine).
    print(json.dumps({"event": "loaded"}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def start(i: int, session: Session, base: str) -> None:
            await asyncio.sleep(i * spec.get("stagger", 0.0))
            try:
                if spec["client"] == "package":
                    await run_package(session, base, stream)
                else:
                    link = spec.get("link")
                    if link and "seed" in link:  # one loss pattern per session slot
                        link = {**link, "seed": link["seed"] * 1000 + i}
                    await run_stock(
                        session,
                        http,
                        base,
                        stream,
                        spec.get("needs_input", False),
                        link,
                        spec.get("client_buffer", False),
                        count=spec["client"] == "replay" and not sampled[i],
                    )
            except Exception as exc:  # reported, the run goes on
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
            if s.closer is not None:
                try:
                    await asyncio.wait_for(s.closer(), 5)
                except Exception:
                    pass
    print(
        json.dumps({"event": "result", "sessions": reports, "client_cpu": round(cpu1 - cpu0, 4)}),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
