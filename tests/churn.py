"""Open-and-abort cycles against a server in another process, measured from outside.

Used by tests/test_leaks.py, and run on its own to see whether the server's
memory and threads plateau under churn::

    python -m tests.churn --cycles 300 --every 25 [--settle] [--dump] [--trim] [--no-trim-memory]

Each cycle opens one session one way and abandons it another way (``KINDS``);
kinds take turns, and each kind turns through its streams. The server is uvicorn
serving ``tests.asgi`` with its own SQLite file; ``Server.sample()`` reads its
RSS, threads, file descriptors and UDP sockets with psutil and its live session
rows from the database.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import websockets
from aiortc import RTCPeerConnection

from django_rtcstream.client import (
    SignalingFailed,
    StreamClient,
    SyntheticVideoTrack,
    ToneAudioTrack,
    http_json,
)
from django_rtcstream.media import ice, mulaw

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LIVE_STATES = ("new", "connecting", "connected")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """uvicorn serving tests.asgi in a subprocess, with its own database and
    tests/debug_hook.py installed (``dump()``, ``trim()``)."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.db = workdir / "db.sqlite3"
        self.log = workdir / "server.log"
        self.dump_file = workdir / "dump.json"
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}/rtc/"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PYTHONPATH": str(ROOT),
            "RTCSTREAM_TEST_SQLITE": str(self.db),
            "PYTHONUNBUFFERED": "1",
            "RTCSTREAM_TEST_DEBUG_DUMP": str(self.dump_file),
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.ps: psutil.Process | None = None

    def start(self, timeout: float = 60) -> None:
        migrate = subprocess.run(
            [sys.executable, "-m", "django", "migrate", "--noinput", "-v0"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if migrate.returncode != 0:
            raise RuntimeError(migrate.stdout + migrate.stderr)
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(
                [
                    str(BIN / "uvicorn"),
                    "tests.asgi:application",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.ps = psutil.Process(self.process.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the server exited with {self.process.returncode}:\n{self.tail()}"
                )
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{self.base}streams/", timeout=2).read()
                return
            time.sleep(0.2)
        raise RuntimeError(f"the server did not answer within {timeout} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text()[-n:] if self.log.exists() else ""

    def live_rows(self) -> int:
        with contextlib.closing(sqlite3.connect(self.db, timeout=10)) as connection:
            return connection.execute(
                "SELECT COUNT(*) FROM django_rtcstream_streamsession WHERE state IN (?, ?, ?)",
                LIVE_STATES,
            ).fetchone()[0]

    def sample(self) -> dict[str, int]:
        assert self.ps is not None
        return {
            "rss": self.ps.memory_info().rss,
            "threads": self.ps.num_threads(),
            "fds": self.ps.num_fds(),
            "udp": len(self.ps.net_connections(kind="udp")),
            "live": self.live_rows(),
        }

    async def settle(self, udp: int = 0, timeout: float = 30) -> dict[str, int]:
        """Wait until no row is live and at most ``udp`` UDP sockets are open."""
        deadline = time.monotonic() + timeout
        while True:
            now = self.sample()
            if (now["live"] == 0 and now["udp"] <= udp) or time.monotonic() > deadline:
                return now
            await asyncio.sleep(0.25)

    async def dump(self, timeout: float = 20) -> dict[str, Any]:
        """The server's own object counts (tests/debug_hook.py; needs RTCSTREAM_TEST_DEBUG_DUMP)."""
        assert self.process is not None
        before = json.loads(self.dump_file.read_text())["seq"] if self.dump_file.exists() else 0
        self.process.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                report = json.loads(self.dump_file.read_text())
                if report["seq"] > before:
                    return report
            await asyncio.sleep(0.1)
        raise RuntimeError("the server did not dump its objects")

    def trim(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGUSR1)


# -- the client side ----------------------------------------------------------------


class Ctx:
    """What the cycles share: the server's URLs and each stream's config."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.ws_base = base.replace("http://", "ws://", 1).rstrip("/")  # .../rtc
        self.origin = base.split("/rtc/")[0]
        self.configs: dict[str, dict[str, Any]] = {}
        self.outcomes: dict[str, int] = {}

    async def config(self, stream: str) -> dict[str, Any]:
        if stream not in self.configs:
            status, config = await http_json(f"{self.base}{stream}/config")
            if status != 200:
                raise SignalingFailed(status, config)
            self.configs[stream] = config
        return self.configs[stream]

    def note(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


def _client(ctx: Ctx, stream: str, signaling: str = "http") -> StreamClient:
    return StreamClient(
        ctx.base,
        stream,
        video=SyntheticVideoTrack(),
        audio=ToneAudioTrack(),
        signaling=signaling,
        ice_host_addresses=["127.0.0.1"],
    )


async def _offer(ctx: Ctx, client: StreamClient) -> dict[str, Any]:
    """A client's first half of ``connect()``: its peer connection and offer, not sent."""
    client.config = await ctx.config(client.stream)
    client.pc = RTCPeerConnection(ice.rtc_configuration([]))
    client.channel = client.pc.createDataChannel("text")
    client._add_transceivers(client.config)
    await client.pc.setLocalDescription(await client.pc.createOffer())
    return {"sdp": client.pc.localDescription.sdp, "type": "offer", "webrtc_id": None}


async def _admitted(ctx: Ctx, attempt: Any, patience: float = 5.0) -> Any:
    """Run ``attempt()``; while the stream is full (a limited stream whose last session
    is still closing), try again for ``patience`` seconds."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return await attempt()
        except SignalingFailed as exc:
            if exc.status != 429 or time.monotonic() > deadline:
                raise
            ctx.note("waited_for_slot")
            await asyncio.sleep(0.2)


async def _first_media(client: StreamClient, timeout: float = 3.0) -> None:
    """Some media back (when the stream sends any), so the pipelines really ran."""
    if client.config.get("mode") == "send":
        await asyncio.sleep(0.3)
        return
    queue = client.video_frames if "video" in client.config["modality"] else client.audio_frames
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(queue.get(), timeout)


class _Nowhere:
    """A datagram transport whose socket is gone: sends vanish, nothing arrives."""

    def sendto(self, data: bytes, addr: Any = None) -> None:
        pass

    def close(self) -> None:
        pass

    abort = close

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def _kill_sockets(pc: RTCPeerConnection) -> None:
    """What a killed client process leaves: its UDP sockets closed, nothing said (its
    own peer connection then closes into the void)."""
    transports = {t.receiver.transport for t in pc.getTransceivers() if t.receiver.transport}
    if pc.sctp is not None:
        transports.add(pc.sctp.transport)
    for dtls in transports:
        for protocol in list(dtls.transport._connection._protocols):
            if getattr(protocol, "transport", None) is not None:
                protocol.transport.abort()
                protocol.transport = _Nowhere()


async def _quiet_close(client: StreamClient) -> None:
    for task in client._tasks:
        task.cancel()
    if client.pc is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.pc.close(), 5)


async def offer_then_vanish(ctx: Ctx, stream: str) -> None:
    """The offer is answered; the client never sets the answer and goes away."""
    client = _client(ctx, stream)
    try:
        body = await _offer(ctx, client)

        async def post() -> Any:
            status, reply = await http_json(client.url("webrtc/offer"), body)
            if status != 200:
                raise SignalingFailed(status, reply)
            return reply

        await _admitted(ctx, post)
    finally:
        await _quiet_close(client)


async def close_before_connect(ctx: Ctx, stream: str) -> None:
    """The offer is answered, then closed over HTTP before ICE could connect."""
    client = _client(ctx, stream)
    try:
        body = await _offer(ctx, client)

        async def post() -> Any:
            status, reply = await http_json(client.url("webrtc/offer"), body)
            if status != 200:
                raise SignalingFailed(status, reply)
            return reply

        reply = await _admitted(ctx, post)
        status, _ = await http_json(
            client.url("webrtc/offer"),
            {"type": "close", "webrtc_id": reply["webrtc_id"], "token": reply["token"]},
        )
        if status != 200:
            ctx.note(f"close_answered_{status}")
    finally:
        await _quiet_close(client)


async def connect_then_hang_up(ctx: Ctx, stream: str) -> None:
    """Connected, media flowing, then a clean hang-up (HTTP close, then the pc)."""
    client = _client(ctx, stream)
    try:
        client.config = await ctx.config(stream)
        await _admitted(ctx, lambda: client.connect(timeout=15))
        await _first_media(client)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.hang_up(), 10)
        await _quiet_close(client)


async def connect_then_kill(ctx: Ctx, stream: str) -> None:
    """Connected, media flowing, then the client dies: no close, no DTLS goodbye."""
    client = _client(ctx, stream)
    try:
        await _admitted(ctx, lambda: client.connect(timeout=15))
        await _first_media(client)
    finally:
        if client.pc is not None:
            _kill_sockets(client.pc)
        await _quiet_close(client)


async def ws_dropped_mid_offer(ctx: Ctx, stream: str) -> None:
    """WebSocket signaling: the offer is sent and the socket dropped before the answer."""
    client = _client(ctx, stream, "websocket")
    try:
        body = await _offer(ctx, client)
        ws = await websockets.connect(
            f"{ctx.ws_base.replace('/rtc', '/ws/rtc')}/{stream}/", origin=ctx.origin, max_size=2**22
        )
        await ws.send(json.dumps(body))
        await asyncio.sleep(0.005)
        ws.transport.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.wait_closed(), 5)
    finally:
        await _quiet_close(client)


async def ws_connect_then_drop(ctx: Ctx, stream: str) -> None:
    """WebSocket signaling: connected, media flowing, then the socket is cut (no close
    frame) and the peer connection closes."""
    client = _client(ctx, stream, "websocket")
    try:
        await _admitted(ctx, lambda: client.connect(timeout=15))
        await _first_media(client)
    finally:
        if client._ws is not None:
            client._ws.transport.abort()
        await _quiet_close(client)


def _mulaw_payload(samples: int) -> str:
    t = np.arange(samples) / 8000
    tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    return base64.b64encode(mulaw.encode(tone)).decode()


async def audio_ws_dropped(ctx: Ctx, stream: str) -> None:
    """FastRTC's audio WebSocket: started, some audio sent, then the socket is cut."""
    url = f"{ctx.ws_base.replace('/rtc', '/ws/rtc')}/{stream}/websocket/offer"
    payload = _mulaw_payload(160)

    async def start() -> Any:
        ws = await websockets.connect(url, origin=ctx.origin)
        await ws.send(
            json.dumps({"event": "start", "websocket_id": os.urandom(8).hex(), "sample_rate": 8000})
        )
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if message.get("type") == "session":
                return ws
            if message.get("status") == "failed":
                await ws.close()
                raise SignalingFailed(
                    429 if message["meta"].get("error") == "concurrency_limit_reached" else 400,
                    message,
                )

    ws = await _admitted(ctx, start)
    try:
        for _ in range(15):
            await ws.send(json.dumps({"event": "media", "media": {"payload": payload}}))
            await asyncio.sleep(0.02)
    finally:
        ws.transport.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.wait_closed(), 5)


async def phone_call_dropped(ctx: Ctx, stream: str) -> None:
    """A Twilio media stream: connected, started, some audio, then the socket is cut."""
    url = f"{ctx.ws_base}/{stream}/telephone/handler"
    sid = "MZ" + os.urandom(16).hex()
    payload = _mulaw_payload(160)
    ws = await websockets.connect(url)
    try:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(
            json.dumps(
                {
                    "event": "start",
                    "streamSid": sid,
                    "start": {
                        "streamSid": sid,
                        "callSid": "CA" + os.urandom(16).hex(),
                        "accountSid": "AC00",
                        "tracks": ["inbound"],
                        "customParameters": {},
                        "mediaFormat": {
                            "encoding": "audio/x-mulaw",
                            "sampleRate": 8000,
                            "channels": 1,
                        },
                    },
                }
            )
        )
        for i in range(15):
            await ws.send(
                json.dumps(
                    {
                        "event": "media",
                        "streamSid": sid,
                        "media": {
                            "track": "inbound",
                            "chunk": str(i + 1),
                            "timestamp": str(i * 20),
                            "payload": payload,
                        },
                    }
                )
            )
            await asyncio.sleep(0.02)
    finally:
        ws.transport.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.wait_closed(), 5)


# kind -> (cycle, the streams it turns through). `limited` (concurrency_limit=1) only
# where its session ends at once, so the next cycle on it finds the slot free.
KINDS: dict[str, tuple[Any, list[str]]] = {
    "offer_then_vanish": (offer_then_vanish, ["flip", "echo", "av"]),
    "close_before_connect": (close_before_connect, ["limited", "video-receive", "av-send"]),
    "connect_then_hang_up": (connect_then_hang_up, ["flip", "limited", "av", "tone"]),
    "connect_then_kill": (connect_then_kill, ["echo", "flip", "av-receive", "audio-send"]),
    "ws_dropped_mid_offer": (ws_dropped_mid_offer, ["limited", "flip", "echo"]),
    "ws_connect_then_drop": (ws_connect_then_drop, ["video-send", "echo", "av"]),
    "audio_ws_dropped": (audio_ws_dropped, ["echo", "limited", "audio-send"]),
    "phone_call_dropped": (phone_call_dropped, ["echo", "audio-send"]),
}


async def run_cycles(ctx: Ctx, first: int, count: int, cycle_timeout: float = 30) -> None:
    """Cycles ``first .. first + count - 1``: kinds take turns, each through its streams."""
    names = list(KINDS)
    for i in range(first, first + count):
        name = names[i % len(names)]
        fn, streams = KINDS[name]
        stream = streams[(i // len(names)) % len(streams)]
        try:
            await asyncio.wait_for(fn(ctx, stream), cycle_timeout)
            ctx.note(name)
        except Exception as exc:  # counted; the test decides
            ctx.note(f"{name}:{stream}:{type(exc).__name__}")


async def limited_admits(ctx: Ctx) -> bool:
    """The limited stream (concurrency_limit=1) admits a session and it connects."""
    client = _client(ctx, "limited")
    try:
        await asyncio.wait_for(client.connect(timeout=15), 20)
        return True
    except SignalingFailed:
        return False
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.hang_up(), 10)
        await _quiet_close(client)


def server_env(
    consent_interval: float = 1.0,
    connect_timeout: float = 3.0,
    heartbeat: float = 1.0,
    tracemalloc: bool = False,
) -> dict[str, str]:
    """A killed client found in ~6 s, a vanished one in 3 s, and the memory of ended
    sessions released (TRIM_MEMORY) within a second of the last one."""
    env = {
        "RTCSTREAM_TEST_CONSENT_INTERVAL": str(consent_interval),
        "RTCSTREAM_TEST_CONNECT_TIMEOUT": str(connect_timeout),
        "RTCSTREAM_TEST_HEARTBEAT_INTERVAL": str(heartbeat),
    }
    if tracemalloc:
        env["PYTHONTRACEMALLOC"] = "1"
    return env


def _line(done: int, now: dict[str, int], took: float = 0.0) -> str:
    return (
        f"cycles {done:4d}  rss {now['rss'] / 2**20:6.1f} MB  threads {now['threads']:3d}  "
        f"fds {now['fds']:3d}  udp {now['udp']:2d}  live {now['live']:2d}  ({took:.0f} s)"
    )


async def main(args: argparse.Namespace) -> None:
    ice.install_host_addresses(["127.0.0.1"])
    workdir = Path(tempfile.mkdtemp(prefix="rtcstream-churn-"))
    env = server_env(heartbeat=args.heartbeat, tracemalloc=args.tracemalloc)
    env["RTCSTREAM_TEST_TRIM_MEMORY"] = "1" if args.trim_memory else "0"
    if args.arena_max:
        env["MALLOC_ARENA_MAX"] = str(args.arena_max)
    server = Server(workdir, env)
    server.start()
    ctx = Ctx(server.base)
    print(f"server pid {server.process.pid}, log {server.log}", flush=True)  # type: ignore[union-attr]
    try:
        print(_line(0, await server.settle()), flush=True)
        done = 0
        while done < args.cycles:
            t0 = time.monotonic()
            await run_cycles(ctx, done, args.every)
            done += args.every
            took = time.monotonic() - t0
            now = await server.settle() if args.settle else server.sample()
            line = _line(done, now, took)
            if args.trim:
                server.trim()
                await asyncio.sleep(0.5)
                line += f"  trimmed {server.sample()['rss'] / 2**20:6.1f} MB"
            print(line, flush=True)
            if args.dump:
                report = await server.dump()
                print(
                    "   ",
                    {k: v for k, v in report["watched"].items() if v},
                    "objects",
                    report["gc_objects"],
                    "collected",
                    report["gc_collect"],
                    "threads",
                    report["threads"],
                    "tasks",
                    report["tasks"],
                    report.get("traced", ""),
                    flush=True,
                )
        await server.settle()
        await asyncio.sleep(2 * args.heartbeat + 0.5)  # TRIM_MEMORY's beat
        print("settled", _line(done, server.sample()), flush=True)
        report = await server.dump()
        server.trim()
        await asyncio.sleep(0.5)
        print(
            f"after gc.collect() ({report['gc_collect']}) and malloc_trim: "
            f"{server.sample()['rss'] / 2**20:.1f} MB",
            flush=True,
        )
        print("outcomes", ctx.outcomes, flush=True)
        print("limited admits:", await limited_admits(ctx), flush=True)
    finally:
        server.stop()
    print("snapshots in", workdir)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument(
        "--settle",
        action="store_true",
        help="let every session end before each sample (default: sample mid-churn)",
    )
    parser.add_argument("--dump", action="store_true", help="print the server's object counts")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="trace allocations in the server (snapshots beside the dump)",
    )
    parser.add_argument("--trim", action="store_true", help="malloc_trim after each sample")
    parser.add_argument("--arena-max", type=int, default=0, help="MALLOC_ARENA_MAX for the server")
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=5.0,
        help="the server's HEARTBEAT_INTERVAL (TRIM_MEMORY acts on a beat)",
    )
    parser.add_argument(
        "--no-trim-memory",
        dest="trim_memory",
        action="store_false",
        help="RTCSTREAM['TRIM_MEMORY'] = False in the server",
    )
    asyncio.run(main(parser.parse_args()))
