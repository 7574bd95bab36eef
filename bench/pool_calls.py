"""One handler call's round trip from the event loop through each executor.

    .venv/bin/python bench/pool_calls.py [calls]

Compares the standard ThreadPoolExecutor with the runtime's HandlerPool and a
session's OwnThread (django_rtcstream/sessions/pool.py): CPU and wall time per
call, each measured twice, interleaved.
"""

from __future__ import annotations

import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from django_rtcstream.sessions.pool import HandlerPool, OwnThread


def noop() -> int:
    return 1


async def measure(submit, calls: int) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        await asyncio.wrap_future(submit(), loop=loop)
    return (time.process_time() - cpu) / calls * 1e6, (time.perf_counter() - wall) / calls * 1e6


async def main(calls: int) -> None:
    standard = ThreadPoolExecutor(8)
    pool = HandlerPool(8)
    own = OwnThread(pool.calls, "bench-own")
    executors = {
        "ThreadPoolExecutor": lambda: standard.submit(noop),
        "HandlerPool": lambda: pool.submit_as("bench", None, noop),
        "OwnThread": lambda: own.submit_as("bench", None, noop),
    }
    for _ in range(2):
        for name, submit in executors.items():
            cpu, wall = await measure(submit, calls)
            print(f"{name:20} cpu {cpu:6.1f} us/call   wall {wall:6.1f} us/call")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000))
