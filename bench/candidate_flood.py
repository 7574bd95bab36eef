"""A session's setup time, idle and under a flood of candidates for sessions that never come.

    .venv/bin/python bench/candidate_flood.py http://127.0.0.1:8000/rtc echo --sessions 8 --flood 200

Issue 13's probe: each trickled candidate for an unknown webrtc_id used to wait
up to EARLY_CANDIDATE_WAIT polling the database, and 200 of them made a new
session connect 8.9x slower. Sets up ``--sessions`` sessions one after the other
(offer -> connected) with nothing else going on, then again while ``--flood``
candidates for unknown ids are in flight (each sent again, once answered, at
most once a second), and prints the medians and their ratio (target: at most 1.5).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time

import aiohttp
import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]  # loopback only

GHOST = {"candidate": "candidate:0 1 UDP 2122252543 127.0.0.1 54321 typ host", "sdpMid": "0"}


async def connect_once(http: aiohttp.ClientSession, base: str, stream: str) -> float:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("text")
    pc.addTrack(AudioStreamTrack())
    connected = asyncio.Event()
    pc.on(
        "connectionstatechange",
        lambda: connected.set() if pc.connectionState == "connected" else None,
    )
    started = time.perf_counter()
    await pc.setLocalDescription(await pc.createOffer())
    webrtc_id = secrets.token_urlsafe(16)
    async with http.post(
        f"{base}/{stream}/webrtc/offer",
        json={"type": "offer", "sdp": pc.localDescription.sdp, "webrtc_id": webrtc_id},
    ) as reply:
        answer = await reply.json()
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    await asyncio.wait_for(connected.wait(), 15)
    elapsed = time.perf_counter() - started
    async with http.post(
        f"{base}/{stream}/webrtc/offer",
        json={"type": "close", "webrtc_id": webrtc_id, "token": answer.get("token")},
    ):
        pass
    await pc.close()
    return elapsed


async def flood(
    http: aiohttp.ClientSession,
    base: str,
    stream: str,
    width: int,
    stop: asyncio.Event,
    statuses: dict[int, int],
) -> None:
    async def ghost() -> None:
        # Each ghost keeps one candidate in flight, sent again at most once a second:
        # ``width`` candidates waiting at once, as in issue 13's probe, not an HTTP flood.
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            sent = loop.time()
            body = {
                "type": "ice-candidate",
                "webrtc_id": secrets.token_urlsafe(12),
                "candidate": GHOST,
            }
            async with http.post(f"{base}/{stream}/webrtc/offer", json=body) as reply:
                statuses[reply.status] = statuses.get(reply.status, 0) + 1
            await asyncio.sleep(max(0.0, sent + 1.0 - loop.time()))

    await asyncio.gather(*(ghost() for _ in range(width)))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base")
    parser.add_argument("stream")
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--flood", type=int, default=200)
    args = parser.parse_args()
    base = args.base.rstrip("/")
    connector = aiohttp.TCPConnector(limit=args.flood + 16)
    async with aiohttp.ClientSession(connector=connector) as http:
        await connect_once(http, base, args.stream)  # warm-up
        idle = [await connect_once(http, base, args.stream) for _ in range(args.sessions)]
        stop, statuses = asyncio.Event(), {}
        flooding = asyncio.ensure_future(flood(http, base, args.stream, args.flood, stop, statuses))
        await asyncio.sleep(1.0)  # let the flood fill the server's waiting room
        loaded = [await connect_once(http, base, args.stream) for _ in range(args.sessions)]
        stop.set()
        await flooding
    i, f = statistics.median(idle) * 1000, statistics.median(loaded) * 1000
    print(
        f"setup (offer -> connected), median of {args.sessions}: idle {i:.1f} ms, "
        f"under a flood of {args.flood} {f:.1f} ms: {f / i:.2f}x; flood answers {statuses}"
    )


if __name__ == "__main__":
    asyncio.run(main())
