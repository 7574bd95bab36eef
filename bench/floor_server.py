"""The floor: a bare aiortc server (aiohttp, no framework) with the benchmark's handlers.

    python bench/floor_server.py --port 8101

Routes, shaped like django-rtcstream's and FastRTC's so one client talks to all:
``POST /<stream>/webrtc/offer`` ({sdp, type, webrtc_id} -> {sdp, type, webrtc_id}),
``GET /<stream>/config``, ``GET /ready`` and, for ``echo``, FastRTC's audio
WebSocket protocol at ``GET /echo/websocket/offer`` (each ``media`` event's
mu-law decoded to samples, handed back, encoded and sent at once: the least an
echo over that protocol can do). Streams:

- ``flip``: video; the received frame, upside down, returned from the output
  track's ``recv`` on the event loop (aiortc's own example pattern);
- ``slowflip``: the same with a 100 ms handler, in a thread, latest frame wins;
- ``echo``: audio; the received track itself is sent back (aiortc's echo).

Everything is the stock aiortc stack: default jitter buffers, default codecs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import secrets
import sys
from concurrent.futures import ThreadPoolExecutor

import aioice.ice
from aiohttp import WSMsgType, web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.handlers import flip_frame, slow_flip_frame
from django_rtcstream.media import mulaw  # numpy G.711 tables, the same codec cost as ours

aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]  # loopback only

STREAMS = {"flip": "video", "slowflip": "video", "echo": "audio"}
pcs: set[RTCPeerConnection] = set()
pool = ThreadPoolExecutor(8)


def to_frame(array, like: VideoFrame) -> VideoFrame:
    out = VideoFrame.from_ndarray(array, format="bgr24")
    out.pts, out.time_base = like.pts, like.time_base
    return out


class FlipTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.source = source

    async def recv(self) -> VideoFrame:
        frame = await self.source.recv()
        return to_frame(flip_frame(frame.to_ndarray(format="bgr24")), frame)


class SlowFlipTrack(MediaStreamTrack):
    """A handler slower than the frame rate: keep only the newest input frame."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.source = source
        self.latest: VideoFrame | None = None
        self.fresh = asyncio.Event()
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            while True:
                self.latest = await self.source.recv()
                self.fresh.set()
        except MediaStreamError:
            self.fresh.set()

    async def recv(self) -> VideoFrame:
        await self.fresh.wait()
        self.fresh.clear()
        frame = self.latest
        if frame is None:
            raise MediaStreamError
        array = await asyncio.get_running_loop().run_in_executor(
            pool, lambda: slow_flip_frame(frame.to_ndarray(format="bgr24"))
        )
        return to_frame(array, frame)

    def stop(self) -> None:
        self.reader.cancel()
        super().stop()


async def offer(request: web.Request) -> web.Response:
    name = request.match_info["stream"]
    if name not in STREAMS:
        return web.json_response(
            {"status": "failed", "meta": {"error": "unknown_stream"}}, status=404
        )
    body = await request.json()
    if (
        body.get("type") != "offer"
    ):  # e.g. {"type": "close"}: the peer connection's own close suffices
        return web.json_response({"status": "success"})
    webrtc_id = body.get("webrtc_id") or secrets.token_urlsafe(12)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pcs.add(pc)

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState in ("failed", "closed"):
            await pc.close()
            pcs.discard(pc)

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            pc.addTrack(track)
        elif name == "slowflip":
            pc.addTrack(SlowFlipTrack(track))
        else:
            pc.addTrack(FlipTrack(track))

    await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], body["type"]))
    await pc.setLocalDescription(await pc.createAnswer())
    return web.json_response(
        {"sdp": pc.localDescription.sdp, "type": "answer", "webrtc_id": webrtc_id}
    )


async def websocket_offer(request: web.Request) -> web.StreamResponse:
    if request.match_info["stream"] not in ("echo", "echo-async"):  # one echo for both ladders
        return web.json_response(
            {"status": "failed", "meta": {"error": "unknown_stream"}}, status=404
        )
    ws = web.WebSocketResponse(max_msg_size=1 << 22)
    await ws.prepare(request)
    started = False
    async for message in ws:
        if message.type != WSMsgType.TEXT:
            continue
        data = json.loads(message.data)
        event = data.get("event")
        if event == "start":
            started = True
        elif event == "media" and started:
            samples = mulaw.decode(
                base64.b64decode(data["media"]["payload"])
            )  # the handler's input
            payload = base64.b64encode(mulaw.encode(samples)).decode()  # its output, echoed
            await ws.send_str(json.dumps({"event": "media", "media": {"payload": payload}}))
        elif event == "stop":
            break
    return ws


async def config(request: web.Request) -> web.Response:
    name = request.match_info["stream"]
    if name not in STREAMS:
        return web.json_response(
            {"status": "failed", "meta": {"error": "unknown_stream"}}, status=404
        )
    return web.json_response(
        {
            "name": name,
            "modality": STREAMS[name],
            "mode": "send-receive",
            "rtc_configuration": {"iceServers": []},
        }
    )


async def ready(request: web.Request) -> web.Response:
    return web.json_response({"ready": True, "sessions": len(pcs)})


async def on_shutdown(app: web.Application) -> None:
    await asyncio.gather(*(pc.close() for pc in list(pcs)), return_exceptions=True)
    pcs.clear()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    app = web.Application(client_max_size=1 << 20)
    app.router.add_get("/ready", ready)
    app.router.add_get("/{stream}/config", config)
    app.router.add_post("/{stream}/webrtc/offer", offer)
    app.router.add_get("/{stream}/websocket/offer", websocket_offer)
    app.on_shutdown.append(on_shutdown)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
