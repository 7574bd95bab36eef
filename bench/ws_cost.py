"""What one audio WebSocket session costs the server, per session-second, server by server.

    .venv/bin/python bench/ws_cost.py [--sessions 24] [--window 6] [--rounds 2]
        [--servers floor,daphne,uvicorn] [--streams echo,echo-async] [--ref DIR]

The capacity ladder (``bench/run.py --capacity ws``) says how many sessions a
server holds, but on a shared 2-core machine one step either way is noise, and
the machine's speed drifts by a third within minutes. This measures the cost
directly: ``--sessions`` sessions of FastRTC's protocol (the benchmark's
pre-encoded client, ``bench/ws_client.py``, run in this process) against one
server at a time, the server's CPU over ``--window`` seconds, three windows per
server, servers taken in turn for ``--rounds`` rounds.

Besides ms of server CPU per session-second it prints the server's CPU over this
client's: the client does the same work against every server, so the ratio
cancels the machine's drift, and servers measured minutes apart compare.

Servers: ``floor`` (bench/floor_server.py's aiohttp echo), ``daphne`` and
``uvicorn`` (the bench project, one worker, SQLite). Streams: ``echo`` (a sync
``StreamHandler``, FastRTC's usual echo: ``receive`` in the handler pool, a
blocking ``emit`` on the session's own thread) and ``echo-async`` (the same echo
as an ``AsyncStreamHandler``, all on the event loop); the floor echoes both the
same way. ``--ref DIR`` adds the same servers run from another checkout (a git
worktree of an older commit: ``git worktree add /tmp/ref <commit>``), for a
before/after in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import Server, free_port, migrate, ours_argv  # noqa: E402
from bench.ws_client import WsSession, encoded_messages, run_session  # noqa: E402


def build(server: str, root: Path, tmp: Path) -> Server:
    """One worker (bench/run.py's ``Server``), run from checkout ``root``: the ASGI
    servers put their working directory first on ``sys.path``, so it picks the code."""
    port = free_port()
    if server == "floor":
        argv = [sys.executable, str(root / "bench" / "floor_server.py"), "--port", str(port)]
        env, base = dict(os.environ, PYTHONUNBUFFERED="1"), f"http://127.0.0.1:{port}"
        ready = f"{base}/ready"
    else:
        env = dict(
            os.environ,
            PYTHONUNBUFFERED="1",
            DJANGO_SETTINGS_MODULE="bench.djproject.settings",
            PYTHONPATH=str(root),
            BENCH_DB=str(tmp / f"ws-cost-{os.getpid()}.sqlite3"),
        )
        migrate(env)
        argv, base = ours_argv(server, port), f"http://127.0.0.1:{port}/rtc"
        ready = f"{base}/flip/config"
    worker = {"argv": argv, "env": env, "base": base, "ready": ready, "cwd": root}
    return Server(server, server, [worker], tmp)


async def measure(url: str, origin: str, pid: int, sessions: int, window: float) -> dict[str, Any]:
    """``sessions`` echo sessions for 2 s of warm-up and ``window`` s measured."""
    messages = encoded_messages()
    server, me = psutil.Process(pid), psutil.Process()
    async with aiohttp.ClientSession() as http:
        clients = [WsSession(False) for _ in range(sessions)]
        await asyncio.gather(*(run_session(c, http, url, origin, messages) for c in clients))
        await asyncio.sleep(2)
        s0, c0, t0 = sum(server.cpu_times()[:2]), sum(me.cpu_times()[:2]), time.monotonic()
        await asyncio.sleep(window)
        s1, c1, t1 = sum(server.cpu_times()[:2]), sum(me.cpu_times()[:2]), time.monotonic()
        back = sum(len(c.onsets) for c in clients)
        for c in clients:
            for task in c.tasks:
                task.cancel()
            await c.ws.close()
    seconds = (t1 - t0) * sessions
    return {"server": (s1 - s0) / seconds, "client": (c1 - c0) / seconds, "bursts": back}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=24)
    parser.add_argument("--window", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--servers", default="floor,daphne,uvicorn")
    parser.add_argument("--streams", default="echo,echo-async")
    parser.add_argument("--ref", type=Path, help="another checkout to run ours from too")
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="ws-cost-"))  # the servers' output, if one fails
    cases: list[tuple[str, str, str, Path]] = []  # (label, server, stream, checkout)
    for server in args.servers.split(","):
        streams = ["echo"] if server == "floor" else args.streams.split(",")
        roots = [("", ROOT)] + ([(" (ref)", args.ref.resolve())] if args.ref else [])
        for suffix, root in roots if server != "floor" else [("", ROOT)]:
            for stream in streams:
                cases.append((f"{server} {stream}{suffix}", server, stream, root))
    results: dict[str, list[dict[str, Any]]] = {label: [] for label, *_ in cases}
    for round_ in range(args.rounds):
        for label, server, stream, root in cases:
            target = build(server, root, logs)
            target.start()
            try:
                url = target.bases[0].replace("http://", "ws://") + f"/{stream}/websocket/offer"
                origin = target.bases[0].split("/rtc")[0]
                for _ in range(3):
                    m = asyncio.run(
                        measure(url, origin, target.procs[0].pid, args.sessions, args.window)
                    )
                    results[label].append(m)
                    print(
                        f"round {round_ + 1} {label:28s} server {1000 * m['server']:5.1f} "
                        f"client {1000 * m['client']:4.1f} ms/session-s, bursts back {m['bursts']}",
                        flush=True,
                    )
            finally:
                if target.stop(grace=30):
                    print(f"  {label}: did not stop within 30 s of SIGTERM", flush=True)
    print(f"\n{args.sessions} sessions, medians of {3 * args.rounds} windows of {args.window:g} s")
    print(f"{'':30s} {'server ms/session-s':>20s} {'server / client CPU':>20s}")
    for label, runs in results.items():
        server = statistics.median(r["server"] for r in runs)
        ratio = statistics.median(r["server"] / r["client"] for r in runs if r["client"] > 0)
        print(f"{label:30s} {1000 * server:20.1f} {ratio:20.2f}")


if __name__ == "__main__":
    main()
