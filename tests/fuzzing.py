"""What the fuzz tests share (issue 13): a live echo beside the fuzzing, and leftovers.

A fuzz test runs its requests while an echo session (real aiortc, real Opus)
plays beside them; at the end the echo must have kept >= 90 % of its frames
(50 a second) with no gap between two arrivals over 250 ms, and nothing the
fuzzing opened may still be live: no record, no session in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import time
from dataclasses import dataclass, field

from django_rtcstream.client import StreamClient, ToneAudioTrack
from django_rtcstream.models import ACTIVE_STATES, StreamSession
from django_rtcstream.sessions.manager import manager
from tests.media import collect

FRAMES_PER_SECOND = 50  # 20 ms Opus frames
MIN_SHARE = 0.9
MAX_GAP = 0.25


@dataclass
class EchoWatch:
    """Arrival times of the echo's frames while the fuzzing runs."""

    client: StreamClient
    started: float = 0.0
    stamps: list[float] = field(default_factory=list)
    ended: float | None = None
    task: asyncio.Task | None = None
    ticker: asyncio.Task | None = None
    stalls: list[tuple] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)  # fuzzing threads: their CPU in stalls
    collections: list[tuple] = field(default_factory=list)  # (at s, generation, ms) over 20 ms
    _gc_started: float = 0.0

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.monotonic()
        else:
            took = time.monotonic() - self._gc_started
            if took > 0.02:
                self.collections.append(
                    (
                        round(self._gc_started - self.started, 2),
                        info["generation"],
                        round(took * 1000),
                    )
                )

    @property
    def webrtc_id(self) -> str:
        return self.client.webrtc_id

    async def _watch(self) -> None:
        while True:
            await self.client.audio_frames.get()
            self.stamps.append(time.monotonic())

    async def _tick(self) -> None:
        """Diagnostics: stalls of this loop over 100 ms, with the CPU its thread used
        meanwhile (about the stall: code blocked the loop; far less: the host was busy)."""

        def others() -> float:
            total = 0.0
            for ident in self.threads:
                with contextlib.suppress(OSError, ValueError):
                    total += time.clock_gettime(time.pthread_getcpuclockid(ident))
            return total

        wall, cpu, other = time.monotonic(), time.thread_time(), others()
        while True:
            await asyncio.sleep(0.01)
            now, used, other_now = time.monotonic(), time.thread_time(), others()
            if now - wall > 0.1:
                self.stalls.append(
                    (
                        round(wall - self.started, 2),
                        round((now - wall) * 1000),
                        round((used - cpu) * 1000),
                        round((other_now - other) * 1000),
                    )
                )
            wall, cpu, other = now, used, other_now

    async def observed(self, seconds: float) -> None:
        """Keep watching until the echo has been watched for ``seconds`` (a measurement
        window: a share of frames over a fraction of a second says nothing)."""
        left = self.started + seconds - time.monotonic()
        if left > 0:
            await asyncio.sleep(left)

    def stop(self) -> None:
        if self.ended is None:
            self.ended = time.monotonic()
        for task in (self.task, self.ticker):
            if task is not None:
                task.cancel()
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def summary(self) -> dict[str, float]:
        end = self.ended or time.monotonic()
        seconds = end - self.started
        points = [self.started, *self.stamps, end]
        gaps = [(b - a, a) for a, b in itertools.pairwise(points)] or [(seconds, self.started)]
        gap, at = max(gaps)
        expected = seconds * FRAMES_PER_SECOND
        return {
            "seconds": round(seconds, 2),
            "frames": len(self.stamps),
            "expected": round(expected),
            "share": round(len(self.stamps) / max(expected, 1), 3),
            "max_gap_ms": round(gap * 1000),
            "max_gap_at_s": round(at - self.started, 2),
            "loop_stalls": self.stalls[:10],
            "gc_pauses": self.collections[:10],
        }

    def disturbed(self) -> str | None:
        """Why the echo noticed the fuzzing, or None."""
        self.stop()
        s = self.summary()
        if s["share"] >= MIN_SHARE and s["max_gap_ms"] <= MAX_GAP * 1000:
            return None
        return (
            f"the live echo noticed: {s} (loop_stalls: (at s, wall ms, loop-thread CPU ms, "
            f"fuzzing threads' CPU ms); gc_pauses: (at s, generation, ms))"
        )

    def assert_undisturbed(self) -> None:
        why = self.disturbed()
        assert why is None, why


@contextlib.asynccontextmanager
async def live_echo(rtc_url: str):
    """An echo session, connected and flowing, watched for as long as the block runs."""
    # What the test process holds before the fuzzing (pytest's, the earlier tests' log
    # records, Hypothesis's) is no server's heap: out of the collector's full passes, as the
    # server's import-time heap is (GC_FREEZE), so its pauses measure the fuzzing's garbage.
    gc.collect()
    gc.freeze()
    async with StreamClient(rtc_url, "echo", audio=ToneAudioTrack()) as client:
        await collect(client.audio_frames, 5)
        while not client.audio_frames.empty():  # start counting from now
            client.audio_frames.get_nowait()
        watch = EchoWatch(client, started=time.monotonic())
        watch.task = asyncio.ensure_future(watch._watch())
        watch.ticker = asyncio.ensure_future(watch._tick())
        gc.callbacks.append(watch._on_gc)
        try:
            yield watch
        finally:
            watch.stop()
            await client.hang_up()


async def assert_nothing_left(keep: set[str] = frozenset(), timeout: float = 10.0) -> None:
    """Within ``timeout``: no live record and no session of this process but ``keep``'s."""
    deadline = time.monotonic() + timeout
    while True:
        live = [
            r.webrtc_id
            async for r in StreamSession.objects.filter(state__in=ACTIVE_STATES)
            if r.webrtc_id not in keep
        ]
        running = set(manager().sessions) - set(keep)
        if not live and not running:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left live: records {live}, sessions {sorted(running)}")
        await asyncio.sleep(0.05)
