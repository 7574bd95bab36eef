"""Time offers alone: rounds of simultaneous offers against one server, median answer time.

    .venv/bin/python bench/offers.py http://127.0.0.1:8000/rtc echo --rounds 15 --concurrency 4

Each session gets an aiortc peer connection with one track (video for ``flip``
streams, audio otherwise) and a data channel, lives ``--live`` seconds (0.3),
and hangs up. ``--stagger 0.05 --parallel 2`` sends the round's offers as
run.py's many-session scenarios do (two client processes, each starting a
session every 50 ms), so later offers meet earlier sessions connecting:

    .venv/bin/python bench/offers.py http://127.0.0.1:8000/rtc echo --concurrency 4 \
        --stagger 0.05 --parallel 2 --live 1.5

The first round warms the server up and is not counted. Works against the floor
(``bench/floor_server.py``) and ours alike: the offer is FastRTC-shaped.
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
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]  # loopback only


async def one(
    http: aiohttp.ClientSession, base: str, stream: str, delay: float = 0.0, live: float = 0.3
) -> float:
    await asyncio.sleep(delay)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("text")
    pc.addTrack(VideoStreamTrack() if "flip" in stream else AudioStreamTrack())
    await pc.setLocalDescription(await pc.createOffer())
    body = {"sdp": pc.localDescription.sdp, "type": "offer", "webrtc_id": secrets.token_urlsafe(12)}
    t0 = time.perf_counter()
    async with http.post(f"{base}/{stream}/webrtc/offer", json=body) as response:
        reply = await response.json(content_type=None)
    elapsed = time.perf_counter() - t0
    try:
        await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
        await asyncio.sleep(live)
    finally:
        await pc.close()
    return elapsed


async def main(args: argparse.Namespace) -> None:
    async with aiohttp.ClientSession() as http:
        times: list[float] = []
        for round_ in range(args.rounds + 1):
            batch = await asyncio.gather(
                *(
                    one(
                        http,
                        args.base.rstrip("/"),
                        args.stream,
                        (i // args.parallel) * args.stagger,
                        args.live,
                    )
                    for i in range(args.concurrency)
                )
            )
            if round_:
                times.extend(batch)
            await asyncio.sleep(0.3)
    print(
        f"{len(times)} offers, {args.concurrency} at a time: median {statistics.median(times) * 1000:.1f} ms, "
        f"min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "base", help="the URL the stream names hang off, e.g. http://127.0.0.1:8000/rtc"
    )
    parser.add_argument("stream")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--concurrency", type=int, default=1, help="offers per round")
    parser.add_argument(
        "--stagger", type=float, default=0.0, help="seconds between waves of a round"
    )
    parser.add_argument("--parallel", type=int, default=1_000_000, help="offers per wave")
    parser.add_argument("--live", type=float, default=0.3, help="seconds each session lives")
    asyncio.run(main(parser.parse_args()))
