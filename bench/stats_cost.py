"""What sampling a session's stats costs the event loop (sessions/stats.py, readings.py).

    .venv/bin/python bench/stats_cost.py [--sessions 4] [--seconds 10] [--calls 200]

Runs the bench project in this process (uvicorn, SQLite) with ``--sessions``
echo (audio) and as many flip (video 640x480) sessions over loopback, samples
every 0.5 s for ``--seconds``, then times ``--calls`` back-to-back samples of each
session (``read()`` and ``make_sample()``: one ``getStats()`` per transceiver, which
never suspends, so the wall time measured is the time the loop is held). Prints the
median, p95 and max per sample, and what that is at the default 2 s interval.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.djproject.settings")
os.environ.setdefault("BENCH_DB", "/tmp/rtcstream-bench-stats.sqlite3")
os.environ["BENCH_STATS_INTERVAL"] = "0.5"


async def main(args: argparse.Namespace) -> None:
    from bench.djproject.asgi import application
    from django_rtcstream.client import StreamClient, SyntheticVideoTrack, ToneAudioTrack
    from django_rtcstream.sessions.manager import local_session
    from django_rtcstream.sessions.readings import make_sample
    from django_rtcstream.testing import live_server

    async with live_server(application) as url:
        clients = []
        for _ in range(args.sessions):
            clients.append(StreamClient(f"{url}/rtc/", "echo", audio=ToneAudioTrack()))
            clients.append(StreamClient(f"{url}/rtc/", "flip", video=SyntheticVideoTrack()))
        for client in clients:
            await client.connect(timeout=30)
        try:
            await asyncio.sleep(args.seconds)
            sessions = [local_session(c.webrtc_id) for c in clients]
            live = [s for s in sessions if s is not None]
            in_session = [cost for s in live for cost in s.stats.costs]
            timed: dict[str, list[float]] = {"audio": [], "video": []}
            for session in live:
                kind = "video" if session.stream.name == "flip" else "audio"
                before = await session.stats.read()
                for _ in range(args.calls):
                    started = time.perf_counter()
                    now = await session.stats.read()
                    make_sample(now, before)
                    timed[kind].append(time.perf_counter() - started)
                    before = now
                    await asyncio.sleep(0)  # let the media run between calls
            samples = [s.stats.latest for s in live]
        finally:
            for client in clients:
                await client.close()

    def line(name: str, costs: list[float]) -> str:
        costs = sorted(costs)
        p95 = costs[int(0.95 * (len(costs) - 1))]
        median = statistics.median(costs)
        return (
            f"{name:<28} n={len(costs):<5} median {median * 1e6:7.0f} us  p95 {p95 * 1e6:7.0f} us"
            f"  max {costs[-1] * 1e6:7.0f} us  = {median / 2.0 * 100:.4f}% of the loop at 2 s"
        )

    print(f"load average: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    print(line("samples taken in sessions", in_session))
    print(line("back-to-back, audio session", timed["audio"]))
    print(line("back-to-back, video session", timed["video"]))
    rtts = [s["rtt_ms"] for s in samples if s and s.get("rtt_ms") is not None]
    print(f"{len(samples)} sessions; RTT of {len(rtts)}: {sorted(rtts)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=4, help="echo and flip sessions each")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--calls", type=int, default=200)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    asyncio.run(main(parser.parse_args()))
