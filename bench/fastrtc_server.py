"""FastRTC with the benchmark's handlers, under uvicorn (run with bench/.venv-fastrtc's python).

    bench/.venv-fastrtc/bin/python bench/fastrtc_server.py --port 8104

Each stream is mounted with ``stream.mount(app, path="/<name>")``, so offers go
to ``/<name>/webrtc/offer``. FastRTC leaves two things to the application that
an API client needs, added here as FastRTC's docs show: ``POST /<name>/input``
calls ``stream.set_input`` (a video handler does not run before it is called),
and ``GET /<name>/config`` / ``GET /ready`` for the benchmark client.
aioice is made to gather on 127.0.0.1 (it skips loopback by default).
"""

from __future__ import annotations

import argparse
import os
import sys

import aioice.ice

aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]  # loopback only

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from fastrtc import Stream, StreamHandler  # noqa: E402

from bench.handlers import EchoLogic, flip_frame, slow_flip_frame  # noqa: E402


class Echo(EchoLogic, StreamHandler):
    def __init__(self) -> None:
        super().__init__(input_sample_rate=48000, output_sample_rate=48000)
        self._echo_init()

    def copy(self) -> Echo:
        return Echo()

    def receive(self, frame) -> None:
        self._echo_receive(frame)

    def emit(self):
        return self._echo_emit()


SERVER_RTC = {"iceServers": []}
STREAMS = {
    "flip": Stream(
        flip_frame,
        modality="video",
        mode="send-receive",
        concurrency_limit=1000,
        server_rtc_configuration=SERVER_RTC,
    ),
    "slowflip": Stream(
        slow_flip_frame,
        modality="video",
        mode="send-receive",
        concurrency_limit=1000,
        server_rtc_configuration=SERVER_RTC,
    ),
    "echo": Stream(
        Echo(),
        modality="audio",
        mode="send-receive",
        concurrency_limit=1000,
        server_rtc_configuration=SERVER_RTC,
    ),
}

app = FastAPI()


@app.get("/ready")
async def ready():
    return {"ready": True}


def add_routes(name: str, stream: Stream) -> None:
    stream.mount(app, path=f"/{name}")

    @app.get(f"/{name}/config")
    async def config():
        return {
            "name": name,
            "modality": stream.modality,
            "mode": stream.mode,
            "rtc_configuration": {"iceServers": []},
        }

    @app.post(f"/{name}/input")
    async def set_input(body: dict):
        # A function handler takes the frame first: FastRTC replaces args[0] with it.
        stream.set_input(body["webrtc_id"], None)
        return {"status": "success"}


for _name, _stream in STREAMS.items():
    add_routes(_name, _stream)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8104)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
