"""A server subprocess's view of its own memory, for tests/churn.py (test-only).

``tests/asgi.py`` installs it when ``RTCSTREAM_TEST_DEBUG_DUMP`` names a file:

- SIGUSR2: collect garbage, then write JSON to that file (``seq`` counts the
  dumps): live objects of the media stack by class, asyncio tasks by name,
  thread names, the largest object types, and, when tracemalloc is tracing
  (``PYTHONTRACEMALLOC=1``), a snapshot saved beside it as ``<file>.<seq>.snap``.
- SIGUSR1: ``malloc_trim(0)`` (glibc), to tell freed-but-kept heap from live memory;
  how long it took (ms) is appended to ``<file>.trim``.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import gc
import json
import os
import re
import signal
import threading
import time
import tracemalloc

WATCHED = (
    "RTCPeerConnection",
    "RTCRtpReceiver",
    "RTCRtpSender",
    "RTCRtpTransceiver",
    "RTCDtlsTransport",
    "RTCIceTransport",
    "RTCSctpTransport",
    "RTCDataChannel",
    "Connection",
    "StunProtocol",
    "RemoteStreamTrack",
    "VideoFrame",
    "AudioFrame",
    "Packet",
    "CodecContext",
    "Session",
    "OwnThread",
    "AudioSocketConsumer",
    "SignalingConsumer",
    "MediaStreamConsumer",
    "Task",
    "Future",
    "ThreadPoolExecutor",
)


def _describe(obj: object) -> str:
    name = type(obj).__name__
    if isinstance(obj, dict):
        keys = [k for k in list(obj)[:6] if isinstance(k, str)]
        return f"dict{keys}"
    if isinstance(obj, (list, tuple, set)):
        return f"{name}[{len(obj)}]"
    if type(obj).__name__ in ("function", "method", "cell"):
        return f"{name}:{getattr(obj, '__qualname__', '')}"
    if type(obj).__name__ == "frame":
        return (
            f"frame:{obj.f_code.co_name}@{obj.f_code.co_filename.rsplit('/', 2)[-1]}:{obj.f_lineno}"
        )
    return name


def _chains(targets: list[object], depth: int = 5, fanout: int = 3) -> list[str]:
    """What keeps ``targets`` alive: referrer chains, a few per level."""
    mine = {id(targets)}  # this walk's own lists refer to what they hold
    out: list[str] = []

    def walk(obj: object, chain: list[str], level: int) -> None:
        if level == depth:
            out.append(" <- ".join(chain))
            return
        refs = gc.get_referrers(obj)
        mine.add(id(refs))
        refs = [r for r in refs if id(r) not in mine and type(r).__name__ != "frame"]
        mine.add(id(refs))
        if not refs:
            out.append(" <- ".join(chain) + " <- (nothing)")
            return
        for ref in refs[:fanout]:
            walk(ref, [*chain, _describe(ref)], level + 1)

    for target in targets:
        walk(target, [_describe(target)], 0)
    return out[:60]


def _dump(path: str, seq: list[int]) -> None:
    started = time.perf_counter()
    collected = gc.collect()
    gc_ms = (time.perf_counter() - started) * 1000
    seq[0] += 1
    by_class: collections.Counter[str] = collections.Counter()
    for obj in gc.get_objects():
        by_class[type(obj).__name__] += 1
    watched = {name: by_class.get(name, 0) for name in WATCHED}
    try:
        tasks = asyncio.all_tasks(asyncio.get_running_loop())
    except RuntimeError:
        tasks = set()
    task_names = collections.Counter(
        re.sub(r"rtcstream:[^:]+:", "rtcstream:<id>:", t.get_name()) for t in tasks
    )
    threads = collections.Counter(re.sub(r"\d+", "N", t.name) for t in threading.enumerate())
    report = {
        "seq": seq[0],
        "watched": watched,
        "tasks": dict(task_names.most_common()),
        "threads": dict(threads.most_common()),
        "top": dict(by_class.most_common(40)),
        "gc_objects": sum(by_class.values()),
        "gc_collect": {"ms": round(gc_ms, 1), "freed": collected},
    }
    if os.environ.get("RTCSTREAM_TEST_DEBUG_REFERRERS"):
        kept = [o for o in gc.get_objects() if type(o).__name__ in ("Session", "RTCPeerConnection")]
        report["referrers"] = _chains(kept)
        del kept
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(f"{path}.{seq[0]}.snap")
        report["traced"] = tracemalloc.get_traced_memory()
    with open(path + ".tmp", "w") as out:
        json.dump(report, out)
    os.replace(path + ".tmp", path)


def _trim(path: str) -> None:
    started = time.perf_counter()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open(path + ".trim", "a") as out:
        out.write(f"{(time.perf_counter() - started) * 1000:.1f}\n")


def install(path: str) -> None:
    seq = [0]
    signal.signal(signal.SIGUSR2, lambda *_: _dump(path, seq))
    signal.signal(signal.SIGUSR1, lambda *_: _trim(path))
