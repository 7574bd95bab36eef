"""Connection churn leaves nothing behind.

Open-and-abort cycles of every kind (tests/churn.py: offer then vanish, close
before connect, connect then hang up, connect then kill the client, WebSocket
signaling dropped mid-offer or once connected, audio WebSocket and Twilio media
stream cut) against one server process, measured from outside: its file
descriptors, threads, UDP sockets and live rows return to their level after a
warm-up, its RSS stays within 10 % of that level, and a stream with a limit
admits again.

Why a warm-up: the first sessions import the media stack and DRF, initialise
codecs and grow glibc's arenas, and two pools grow threads on demand and keep
them: asyncio's default executor (aiortc encodes there; at most
``min(32, cpus + 4)`` threads) and the handler pool (``HANDLER_THREADS``; idle
threads above it exit after 60 s). Those may still grow after the warm-up, up to
their caps; every other thread (a session's emit thread, aiortc's decoder
threads) must be gone once its session is.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
import weakref
from pathlib import Path

import pytest

from django_rtcstream.media import ice
from django_rtcstream.sessions.pool import CallRegistry, HandlerPool, OwnThread
from tests import churn

pytestmark = pytest.mark.media

WARM_UP = 24  # three cycles of each of the eight kinds
CYCLES = 80  # ten more of each
RSS_GROWTH = 0.10
# Threads that belong to one session and must end with it.
PER_SESSION = ("rtcstream-emit-", "audio-decoder", "video-decoder")


class _Payload:
    """Stands for a session: what a call's arguments and result would pin."""


def _gone(ref: weakref.ref, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gc.collect()
        if ref() is None:
            return True
        time.sleep(0.02)
    return False


def test_an_idle_pool_thread_keeps_nothing_of_its_last_call():
    pool = HandlerPool(2)
    own = OwnThread(CallRegistry(), "leak-test-emit")
    try:
        for executor in (pool, own):
            payload = _Payload()
            ref = weakref.ref(payload)
            assert executor.submit_as("call", payload, lambda p: [p], payload).result(5)
            del payload
            assert _gone(ref), f"{type(executor).__name__}'s idle thread still holds its last call"
    finally:
        pool.shutdown()
        own.shutdown()


def _pooled_caps(cpus: int) -> dict[str, int]:
    """Threads of pools that keep them, by name (digits folded), and their caps."""
    return {
        "asyncio_N": min(32, cpus + 4),
        "rtcstream-handler_N": min(32, cpus * 4),
        "ThreadPoolExecutor-N_N": 4,
    }


async def _threads_settled(
    server: churn.Server, base_threads: dict[str, int], base_native: int, timeout: float = 20
) -> tuple[dict, dict, str]:
    """Wait until the per-session threads are gone and no native thread is left over;
    returns (OS sample, the server's Python threads by name, what is still wrong)."""
    caps = _pooled_caps(os.cpu_count() or 1)
    deadline = time.monotonic() + timeout
    while True:
        sample = server.sample()
        threads = (await server.dump())["threads"]
        problems = []
        per_session = {k: v for k, v in threads.items() if k.startswith(PER_SESSION)}
        if per_session:
            problems.append(f"per-session threads left: {per_session}")
        for name, count in threads.items():
            if name in caps:
                if count > caps[name]:
                    problems.append(f"{count} {name} threads, over the pool's {caps[name]}")
            elif not name.startswith(PER_SESSION) and count > base_threads.get(name, 0):
                problems.append(f"{name}: {count}, {base_threads.get(name, 0)} after the warm-up")
        native = sample["threads"] - sum(threads.values())
        if native > base_native:
            problems.append(f"{native} threads outside Python, {base_native} after the warm-up")
        if not problems or time.monotonic() > deadline:
            return sample, threads, "; ".join(problems)
        await asyncio.sleep(0.5)


async def _rss_settled(server: churn.Server, bound: float, timeout: float = 6) -> dict:
    """Wait (a few heartbeats, 1 s here: TRIM_MEMORY gives freed memory back on a beat)
    until RSS is within ``bound``; returns the last sample."""
    deadline = time.monotonic() + timeout
    while True:
        sample = server.sample()
        if sample["rss"] <= bound or time.monotonic() > deadline:
            return sample
        await asyncio.sleep(0.5)


async def test_churn_returns_fds_threads_sockets_rows_and_memory_to_baseline(tmp_path: Path):
    ice.install_host_addresses(["127.0.0.1"])
    server = churn.Server(tmp_path, churn.server_env())
    started = time.monotonic()
    try:
        await asyncio.to_thread(server.start)
        ctx = churn.Ctx(server.base)

        await churn.run_cycles(ctx, 0, WARM_UP)
        base = await server.settle()
        assert base["live"] == 0 and base["udp"] == 0, f"warm-up did not settle: {base}"
        # Threads of the last sessions finishing, and a heartbeat (1 s here) releasing
        # their memory: the level the churn is compared with.
        await asyncio.sleep(2.5)
        base = server.sample()
        base_threads = (await server.dump())["threads"]
        base_native = base["threads"] - sum(base_threads.values())

        rss = []  # during the churn, every ten cycles (MB)
        for first in range(WARM_UP, WARM_UP + CYCLES, 10):
            await churn.run_cycles(ctx, first, 10)
            rss.append(round(server.sample()["rss"] / 2**20))
        end = await server.settle(udp=base["udp"])
        end, threads, thread_problems = await _threads_settled(server, base_threads, base_native)
        await asyncio.sleep(2.5)  # as for the baseline: a heartbeat releases the memory
        end = await _rss_settled(server, base["rss"] * (1 + RSS_GROWTH))
        admitted = await churn.limited_admits(ctx)
        after_limited = await server.settle(udp=base["udp"], timeout=10)

        caps = _pooled_caps(os.cpu_count() or 1)
        new_pooled = sum(max(0, threads.get(n, 0) - base_threads.get(n, 0)) for n in caps)
        report = (
            f"after the warm-up {base}, threads {base_threads}; RSS during the churn "
            f"{rss} MB; after {CYCLES} more cycles {end}, threads {threads}; "
            f"outcomes {ctx.outcomes}; "
            f"{time.monotonic() - started:.0f} s\n{server.tail()}"
        )
        print(report[: report.index("\n")])  # shown with -s or on failure
        failed = {k: v for k, v in ctx.outcomes.items() if ":" in k}
        assert sum(failed.values()) <= (WARM_UP + CYCLES) // 20, f"cycles failed: {report}"
        assert end["live"] == 0, f"live rows left: {report}"
        assert end["udp"] <= base["udp"], f"UDP sockets left: {report}"
        # A pool thread started since the warm-up may keep a database connection open.
        assert end["fds"] <= base["fds"] + new_pooled, f"file descriptors left: {report}"
        assert not thread_problems, f"{thread_problems}: {report}"
        assert end["rss"] <= base["rss"] * (1 + RSS_GROWTH), (
            f"RSS grew {end['rss'] / base['rss'] - 1:+.0%}: {report}"
        )
        assert admitted, f"the limited stream refused a session after the churn: {report}"
        assert after_limited["live"] == 0, f"the limited stream's session stayed live: {report}"
        assert "Traceback" not in server.tail(100_000), f"the server logged a traceback: {report}"
    finally:
        await asyncio.to_thread(server.stop)
