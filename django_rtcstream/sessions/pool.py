"""Threads for sync handler code, which a handler that never returns cannot starve.

Sync handler code (``receive``, ``emit``, video functions, ``start_up``...) runs
off the event loop. FastRTC's own examples block in it: ``emit()`` returning
``queue.get()`` waits until ``receive()`` has put something, and after the
session ends it waits for ever. In a plain bounded pool every such call holds
a thread until the process exits, and a handful of ended sessions leave no
thread for anybody else (FastRTC hangs the same way once its executor is full).

Two rules keep that cost inside the session that causes it:

- :class:`HandlerPool` is bounded (``HANDLER_THREADS``), but a call that has run
  longer than ``HANDLER_STUCK_AFTER`` seconds stops counting against the bound:
  the pool starts another thread for the work behind it. A thread whose long
  call finally returns goes back to the pool, or ends if the pool is full.
- :class:`OwnThread` gives one session a thread of its own for a call that is
  *meant* to block (a sync ``emit()``), so waiting for input never takes a
  pool thread at all.

Both report their running calls to one :class:`CallRegistry`; the pool's
monitor thread logs a call that has run ``STUCK_WARN_AFTER`` seconds, or that
is still running after its session ended, naming the stream and session and
saying for how long, again every ``STUCK_WARN_EVERY`` seconds. ``stuck()``
counts them for the session records and operators.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

STUCK_WARN_AFTER = 10.0  # seconds a call runs before it is logged as stuck
ENDED_GRACE = 0.3  # seconds a call may go on after its session ended before it is stuck
STUCK_WARN_EVERY = 60.0  # and again this often while it stays stuck
IDLE_EXIT_AFTER = 60.0  # seconds an idle thread above the bound lives on
MONITOR_PERIOD = 0.25


@dataclass
class Call:
    """One handler call running on some thread."""

    label: str
    owner: Any  # whatever ``ended(owner)`` is called with: the session
    started: float = field(default_factory=time.monotonic)
    owner_ended: float | None = None
    warned: float | None = None

    def running_for(self, now: float) -> float:
        return now - self.started


class CallRegistry:
    """The calls running now, by an id of their own (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[int, Call] = {}
        self._ids = itertools.count()

    def begin(self, label: str, owner: Any) -> int:
        call_id = next(self._ids)
        with self._lock:
            self._calls[call_id] = Call(label, owner)
        return call_id

    def end(self, call_id: int) -> None:
        with self._lock:
            self._calls.pop(call_id, None)

    def owner_ended(self, owner: Any) -> None:
        """The session behind these calls has closed: a call still running is stuck."""
        now = time.monotonic()
        with self._lock:
            for call in self._calls.values():
                if call.owner is owner and call.owner_ended is None:
                    call.owner_ended = now

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self._calls.values())

    def running(self, owner: Any) -> int:
        """How many calls of ``owner`` are running now."""
        return sum(1 for c in self.snapshot() if c.owner is owner)

    def stuck(self, owner: Any = None, now: float | None = None) -> list[Call]:
        """Calls running for ``STUCK_WARN_AFTER`` or more, or ``ENDED_GRACE`` past
        their session's end."""
        now = time.monotonic() if now is None else now
        return [
            c
            for c in self.snapshot()
            if (owner is None or c.owner is owner)
            and (
                (c.owner_ended is not None and now - c.owner_ended >= ENDED_GRACE)
                or c.running_for(now) >= STUCK_WARN_AFTER
            )
        ]

    def warn_stuck(self, now: float) -> None:
        for call in self.stuck(now=now):
            if call.warned is not None and now - call.warned < STUCK_WARN_EVERY:
                continue
            call.warned = now
            if call.owner_ended is not None:
                logger.warning(
                    "Handler call %s has not returned %.0f s after its session ended "
                    "(running for %.0f s); its thread is held until it returns",
                    call.label,
                    now - call.owner_ended,
                    call.running_for(now),
                )
            else:
                logger.warning(
                    "Handler call %s has been running for %.0f s", call.label, call.running_for(now)
                )


class _Work:
    __slots__ = ("args", "fn", "future", "label", "owner")

    def __init__(
        self,
        future: Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        label: str,
        owner: Any,
    ) -> None:
        self.future, self.fn, self.args, self.label, self.owner = future, fn, args, label, owner


_UNCOUNTED = "\0uncounted"  # the label of a job that is not a handler call


def _run(work: _Work, registry: CallRegistry) -> None:
    if not work.future.set_running_or_notify_cancel():
        return
    call_id = registry.begin(work.label, work.owner) if work.label != _UNCOUNTED else None
    try:
        result = work.fn(*work.args)
    except BaseException as exc:
        work.future.set_exception(exc)
    else:
        work.future.set_result(result)
    finally:
        if call_id is not None:
            registry.end(call_id)


class HandlerPool(Executor):
    """A bounded thread pool in which a stuck call gives up its place (see the module)."""

    def __init__(
        self, size: int, *, stuck_after: float = 1.0, name: str = "rtcstream-handler"
    ) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self.stuck_after = stuck_after
        self.name = name
        self.calls = CallRegistry()
        self._cond = threading.Condition()
        self._work: deque[_Work] = deque()
        self._idle = 0
        self._busy: dict[int, float] = {}  # thread ident -> when its call started
        self._threads = 0
        self._numbers = itertools.count(1)
        self._shutdown = False
        self._stopped = threading.Event()
        self._monitor = threading.Thread(target=self._watch, name=f"{name}-monitor", daemon=True)
        self._monitor.start()

    # -- Executor ----------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if kwargs:
            raise TypeError("HandlerPool.submit takes positional arguments only")
        return self.submit_as("", None, fn, *args)

    def submit_as(self, label: str, owner: Any, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args)``; ``label`` and ``owner`` name the call if it gets stuck."""
        future: Future[Any] = Future()
        with self._cond:
            if self._shutdown:
                raise RuntimeError("cannot schedule new calls after shutdown")
            self._work.append(_Work(future, fn, args, label, owner))
            if self._idle:
                self._cond.notify()
            else:
                self._grow(time.monotonic())
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._cond:
            self._shutdown = True
            if cancel_futures:
                while self._work:
                    self._work.popleft().future.cancel()
            self._cond.notify_all()
        self._stopped.set()

    # -- what operators see ------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Threads, idle threads, queued calls and stuck calls, now."""
        now = time.monotonic()
        with self._cond:
            return {
                "threads": self._threads,
                "idle": self._idle,
                "queued": len(self._work),
                "stuck": len(self.calls.stuck(now=now)),
                "over_time": sum(1 for s in self._busy.values() if now - s >= self.stuck_after),
            }

    # -- internals (under self._cond) ----------------------------------------------------

    def _working(self, now: float) -> int:
        """Threads that count against the bound: all but those stuck in a long call."""
        over = sum(1 for started in self._busy.values() if now - started >= self.stuck_after)
        return self._threads - over

    def _grow(self, now: float) -> None:
        if self._work and not self._idle and self._working(now) < self.size:
            self._threads += 1
            thread = threading.Thread(
                target=self._worker, daemon=True, name=f"{self.name}_{next(self._numbers)}"
            )
            thread.start()

    def _worker(self) -> None:
        me = threading.get_ident()
        registry = self.calls
        cond = self._cond
        while True:
            with cond:
                while not self._work:
                    if self._shutdown:
                        self._threads -= 1
                        return
                    self._idle += 1
                    woke = cond.wait(IDLE_EXIT_AFTER)
                    self._idle -= 1
                    if not woke and not self._work and self._threads > self.size:
                        self._threads -= 1
                        return
                work = self._work.popleft()
                self._busy[me] = time.monotonic()
            try:
                _run(work, registry)
            finally:
                # An idle thread must not keep its last call alive while it waits: that
                # call's arguments and result pin its session (handler, peer connection,
                # frames) long after the session closed (concurrent.futures does the same).
                del work
                with cond:
                    del self._busy[me]
                    # Another thread took this one's place while its call ran long.
                    replaced = self._working(time.monotonic()) > self.size
                    if replaced:
                        self._threads -= 1
            if replaced:
                return

    def _watch(self) -> None:
        # Not a waiter on self._cond: its notify() must wake a worker, never the monitor.
        while not self._stopped.wait(MONITOR_PERIOD):
            with self._cond:
                now = time.monotonic()
                self._grow(now)
            self.calls.warn_stuck(now)


class OwnThread(Executor):
    """One thread for one session's calls that are meant to block (a sync ``emit``).

    Calls run in order. ``shutdown()`` lets the thread end after the call it is
    in; if that call never returns, only this thread is lost, and ``registry``
    (the pool's) reports it.
    """

    _STOP = object()

    def __init__(self, registry: CallRegistry, name: str) -> None:
        self.registry = registry
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._worker, name=name, daemon=True)
        self._started = False
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if kwargs:
            raise TypeError("OwnThread.submit takes positional arguments only")
        return self.submit_as("", None, fn, *args)

    def submit_as(self, label: str, owner: Any, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new calls after shutdown")
            if not self._started:
                self._started = True
                self._thread.start()
        self._queue.put(_Work(future, fn, args, label, owner))
        return future

    def start_loop(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the thread as a job that is not itself a handler call (an
        ``EmitAhead`` loop: it counts each call it makes in the registry)."""
        self.submit_as(_UNCOUNTED, None, fn)

    def shutdown(self, wait: bool = False, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            started = self._started
        if started:
            self._queue.put(self._STOP)

    def _worker(self) -> None:
        while True:
            work = self._queue.get()
            if work is self._STOP:
                return
            _run(work, self.registry)
            del work  # not pinned while the thread waits for the next call
