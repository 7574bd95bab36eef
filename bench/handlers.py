"""The handlers every server under test runs: plain code, no framework imports.

Each server wraps these in its own handler types (a bare aiortc track, a
django-rtcstream ``Stream``, a FastRTC ``Stream``), so the work per frame is
the same everywhere.
"""

from __future__ import annotations

import queue
import time

import numpy as np

SLOW_SECONDS = 0.1  # the slow video handler: 3x a 30 fps frame period


def flip_frame(frame: np.ndarray) -> np.ndarray:
    """video / send-receive: the frame upside down (HxWx3 uint8)."""
    return np.ascontiguousarray(frame[::-1])


def slow_flip_frame(frame: np.ndarray) -> np.ndarray:
    """video / send-receive: the flip after 100 ms of "model" time (sleeps, no CPU)."""
    time.sleep(SLOW_SECONDS)
    return flip_frame(frame)


class EchoLogic:
    """audio / send-receive: plays back what it hears; ``emit`` blocks briefly on a queue."""

    EMIT_WAIT = 0.02

    def _echo_init(self) -> None:
        self.queue: queue.Queue = queue.Queue(maxsize=50)

    def _echo_receive(self, frame):
        try:
            self.queue.put_nowait(frame)
        except queue.Full:  # the caller talks faster than we play: drop
            pass

    def _echo_emit(self):
        try:
            return self.queue.get(timeout=self.EMIT_WAIT)
        except queue.Empty:
            return None
