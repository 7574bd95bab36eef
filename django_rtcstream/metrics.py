"""Prometheus metrics of this worker's sessions, through ``prometheus_client``.

Optional: with ``prometheus_client`` missing (``pip install django-rtcstream[metrics]``)
every function here does nothing and ``<prefix>/metrics`` says how to install it.

**Several worker processes.** A scrape reaches one worker, so each worker's figures
must be where any worker can read them: prometheus_client's multiprocess mode.
Set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory in every worker's environment
(before the workers start; empty it on every start of the whole service), and each
worker writes its values to memory-mapped files there; ``<prefix>/metrics`` on any
worker sums them. Workers remove their live gauges when they exit
(``mark_process_dead``, at interpreter exit). Without the variable a worker exports
its own figures only, which is right for a single process. Per-worker endpoints
were the other way: a scraper cannot address one process behind the port that
``uvicorn --workers`` or a load balancer shares, and several hosts each have their
own directory and endpoint anyway (scrape every host).

**Nothing on the media path.** Frames are counted by the sessions' own integer
counters, as before; a sampler task on each worker's event loop adds what they
moved since its last look to the counters every ``METRICS_INTERVAL`` seconds (and
once more when a session goes, and for the worker that answers a scrape, just
before it answers). The same task measures the event loop's lag (how late a
``sleep`` wakes, ten times a second) and reads the handler pool's queue and stuck
calls. Session starts, ends and handler errors come from the session signals; the
handler call histograms time each handler call (two clock reads and one
histogram update: about a microsecond beside a call that costs a thread hop).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import inspect
import logging
import os
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

try:
    import prometheus_client
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
except ImportError:  # the "metrics" extra is not installed
    prometheus_client = None  # type: ignore[assignment]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LAG_PROBE_SECONDS = 0.1  # how often the sampler looks at the event loop's lag

#: Handler methods (and the runtime's own wrappers of the user's functions) whose
#: calls are timed, and the ``kind`` label of each.
CALL_KINDS = {
    "receive": "receive",
    "emit": "emit",
    "video_receive": "video_receive",
    "video_emit": "video_emit",
    "start_up": "start_up",
    "shutdown": "shutdown",
    "_transform_video": "video",  # a plain send-receive video function
    "_apply_video_fn": "video",  # a plain send-mode video function
    "_next_or_end": "generator",  # the next item of a receive-mode generator
}
CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def available() -> bool:
    """Whether ``prometheus_client`` is installed."""
    return prometheus_client is not None


def multiprocess() -> bool:
    """Whether the workers share their figures through ``PROMETHEUS_MULTIPROC_DIR``."""
    return bool(os.environ.get(MULTIPROC_ENV))


if prometheus_client is not None:
    #: The app's own registry (single-process mode); multiprocess mode reads the files.
    REGISTRY = CollectorRegistry(auto_describe=True)

    SESSIONS_LIVE = Gauge(
        "rtcstream_sessions_live",
        "Sessions live now, by stream and transport.",
        ["stream", "transport"],
        registry=REGISTRY,
        multiprocess_mode="livesum",
    )
    SESSIONS_STARTED = Counter(
        "rtcstream_sessions_started",
        "Sessions admitted and started, by stream and transport.",
        ["stream", "transport"],
        registry=REGISTRY,
    )
    SESSIONS_ENDED = Counter(
        "rtcstream_sessions_ended",
        "Sessions ended, by stream, transport, close reason and final state.",
        ["stream", "transport", "reason", "state"],
        registry=REGISTRY,
    )
    ADMISSIONS_REFUSED = Counter(
        "rtcstream_admissions_refused",
        "Sessions refused at admission, by stream and reason "
        "(concurrency_limit_reached, connection_already_exists, database_unavailable, draining).",
        ["stream", "reason"],
        registry=REGISTRY,
    )
    HANDLER_ERRORS = Counter(
        "rtcstream_handler_errors",
        "Sessions ended by an exception out of their handler, by stream and exception type.",
        ["stream", "error"],
        registry=REGISTRY,
    )
    HANDLER_CALLS = Histogram(
        "rtcstream_handler_call_seconds",
        "How long handler calls take, by stream and kind of call "
        "(receive, emit, video, generator, start_up...).",
        ["stream", "kind"],
        buckets=CALL_BUCKETS,
        registry=REGISTRY,
    )
    FRAMES = Counter(
        "rtcstream_frames",
        "Media frames the sessions handled, by stream and direction (in: from clients, "
        "out: to clients).",
        ["stream", "direction"],
        registry=REGISTRY,
    )
    FRAMES_DROPPED = Counter(
        "rtcstream_frames_dropped",
        "Input frames dropped before the handler saw them (a slow handler skips stale "
        "video; a socket's audio beyond its queue), by stream and kind.",
        ["stream", "kind"],
        registry=REGISTRY,
    )
    LOOP_LAG = Histogram(
        "rtcstream_event_loop_lag_seconds",
        "How late the worker's event loop runs a timer (sampled ten times a second).",
        buckets=LAG_BUCKETS,
        registry=REGISTRY,
    )
    LOOP_LAG_MAX = Gauge(
        "rtcstream_event_loop_lag_max_seconds",
        "The worst event loop lag of the last sampling interval, by worker.",
        ["worker"],
        registry=REGISTRY,
        multiprocess_mode="livesum",
    )
    POOL_QUEUED = Gauge(
        "rtcstream_handler_pool_queued",
        "Sync handler calls waiting for a thread of the handler pool, by worker.",
        ["worker"],
        registry=REGISTRY,
        multiprocess_mode="livesum",
    )
    POOL_THREADS = Gauge(
        "rtcstream_handler_pool_threads",
        "Threads of the handler pool, by worker.",
        ["worker"],
        registry=REGISTRY,
        multiprocess_mode="livesum",
    )
    CALLS_STUCK = Gauge(
        "rtcstream_handler_calls_stuck",
        "Handler calls running for 10 s or more, or still running after their session "
        "ended, by worker.",
        ["worker"],
        registry=REGISTRY,
        multiprocess_mode="livesum",
    )
    DRAINING = Gauge(
        "rtcstream_worker_draining",
        "1 while the worker drains (takes no new sessions), by worker.",
        ["worker"],
        registry=REGISTRY,
        multiprocess_mode="livesum",
    )

    if multiprocess():
        # This worker's live gauges go with it; its counters stay in the sums.
        atexit.register(lambda: _mark_dead(os.getpid()))


def process_exiting() -> None:
    """This worker stops: in multiprocess mode, its live gauges leave the sums."""
    if prometheus_client is not None and multiprocess():
        _mark_dead(os.getpid())


def _mark_dead(pid: int) -> None:
    from prometheus_client import multiprocess as mp

    try:
        mp.mark_process_dead(pid)  # type: ignore[no-untyped-call]
    except OSError:  # the directory went first
        pass


# -- handler calls (runtime hooks) ------------------------------------------------------

_call_children: dict[tuple[str, str], Any] = {}
_is_async: dict[Any, bool] = {}  # function -> whether it is a coroutine function


def _call_child(stream: str, kind: str) -> Any:
    child = _call_children.get((stream, kind))
    if child is None:
        child = _call_children.setdefault((stream, kind), HANDLER_CALLS.labels(stream, kind))
    return child


def timed(session: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, timed into ``rtcstream_handler_call_seconds`` if it is a handler call
    (see ``CALL_KINDS``); anything else (conversions, closing a generator) as it is."""
    if prometheus_client is None:
        return fn
    kind = CALL_KINDS.get(getattr(fn, "__name__", ""))
    if kind is None:
        return fn
    child = _call_child(session.stream.name or "", kind)
    clock = time.perf_counter
    wrapper: Any
    function = getattr(fn, "__func__", fn)  # a bound method's function: the cache key
    is_async = _is_async.get(function)
    if is_async is None:
        is_async = inspect.iscoroutinefunction(fn)
        if len(_is_async) < 1000:  # handler methods and the runtime's functions: a few
            _is_async[function] = is_async
    if is_async:

        async def wrapper(*args: Any) -> Any:
            started = clock()
            try:
                return await fn(*args)
            finally:
                child.observe(clock() - started)
    else:

        def wrapper(*args: Any) -> Any:
            started = clock()
            try:
                return fn(*args)
            finally:
                child.observe(clock() - started)

    wrapper.__qualname__ = getattr(fn, "__qualname__", kind)  # what stuck-call logs name
    timed_fn: Callable[..., Any] = wrapper
    return timed_fn


# -- admission (runtime hook) -----------------------------------------------------------


def refused(stream: str, reason: str) -> None:
    """Count a session refused at admission."""
    if prometheus_client is not None:
        ADMISSIONS_REFUSED.labels(stream, reason).inc()


def admission(stream: Any, future: asyncio.Future[Any]) -> asyncio.Future[Any]:
    """Count ``future`` (a running admission) as refused if it fails; returns it."""
    if prometheus_client is not None:
        name = stream.name or ""

        def done(f: asyncio.Future[Any]) -> None:
            if f.cancelled():
                return
            exc = f.exception()
            if exc is not None:
                refused(name, getattr(exc, "code", None) or type(exc).__name__)

        future.add_done_callback(done)
    return future


# -- frames: the sessions' own counters, sampled --------------------------------------

# record id -> (stream, frames in, frames out, video dropped, audio dropped) last counted
_counted: dict[Any, tuple[str, int, int, int, int]] = {}


def _frame_counts(session: Any) -> tuple[int, int, int, int]:
    from django_rtcstream.sessions.readings import dropped_frames

    counters = session.counters()  # frames_in, frames_out (what the record stores)
    # The input buffers' drop counts, read where the session stats read them.
    video, audio, _shed = dropped_frames(session)
    return counters["frames_in"], counters["frames_out"], video, audio


def _account(session: Any) -> None:
    stream = session.stream.name or ""
    now = _frame_counts(session)
    last = _counted.get(session.record_id)
    before = last[1:] if last is not None else (0, 0, 0, 0)
    deltas = [n - b for n, b in zip(now, before)]
    if deltas[0] > 0:
        FRAMES.labels(stream, "in").inc(deltas[0])
    if deltas[1] > 0:
        FRAMES.labels(stream, "out").inc(deltas[1])
    if deltas[2] > 0:
        FRAMES_DROPPED.labels(stream, "video_in").inc(deltas[2])
    if deltas[3] > 0:
        FRAMES_DROPPED.labels(stream, "audio_in").inc(deltas[3])
    _counted[session.record_id] = (stream, *now)


def session_gone(session: Any) -> None:
    """A session left its worker (its counters are final): count the rest of its frames."""
    if prometheus_client is None:
        return
    try:
        _account(session)
    except Exception:  # never in a session's way
        logger.debug("metrics: counting the frames of %r failed", session, exc_info=True)
    _counted.pop(session.record_id, None)


# -- the sampler ------------------------------------------------------------------------

_live_labels: set[tuple[str, str]] = set()


def _manager() -> Any:
    """This worker's session manager, if the runtime is loaded (never loads it)."""
    from django_rtcstream.sessions import drain

    return drain.manager_if_loaded()


def sample(lag_max: float | None = None) -> None:
    """Bring this worker's figures up to date (on its event loop)."""
    if prometheus_client is None:
        return
    from django_rtcstream.conf import rtc_settings
    from django_rtcstream.sessions import drain

    worker = rtc_settings.worker_name()
    DRAINING.labels(worker).set(1 if drain.draining() else 0)
    if lag_max is not None:
        LOOP_LAG_MAX.labels(worker).set(lag_max)
    manager = _manager()
    if manager is None:
        return
    live: dict[tuple[str, str], int] = {}
    for session in list(manager.sessions.values()):
        if not session.admitted or session.closed.is_set():
            continue
        key = (session.stream.name or "", session.channel)
        live[key] = live.get(key, 0) + 1
        _account(session)
    for key in _live_labels - live.keys():
        SESSIONS_LIVE.labels(*key).set(0)
    for key, count in live.items():
        SESSIONS_LIVE.labels(*key).set(count)
    _live_labels.update(live)
    stats = manager.executor.stats()
    POOL_QUEUED.labels(worker).set(stats["queued"])
    POOL_THREADS.labels(worker).set(stats["threads"])
    CALLS_STUCK.labels(worker).set(stats["stuck"])


async def _run_sampler(interval: float) -> None:
    loop = asyncio.get_running_loop()
    probes = max(1, round(interval / LAG_PROBE_SECONDS))
    worst = 0.0
    n = 0
    while True:
        expected = loop.time() + LAG_PROBE_SECONDS
        await asyncio.sleep(LAG_PROBE_SECONDS)
        lag = max(0.0, loop.time() - expected)
        LOOP_LAG.observe(lag)
        worst = max(worst, lag)
        n += 1
        if n >= probes:
            try:
                sample(worst)
            except Exception:
                logger.warning("metrics: sampling this worker failed", exc_info=True)
            worst, n = 0.0, 0


_sampler: asyncio.Task[None] | None = None


def start() -> None:
    """Start the sampler on the running loop (idempotent per loop); at worker start."""
    global _sampler
    if prometheus_client is None:
        return
    loop = asyncio.get_running_loop()
    if _sampler is not None and not _sampler.done() and _sampler.get_loop() is loop:
        return
    from django_rtcstream.conf import rtc_settings

    _sampler = loop.create_task(
        _run_sampler(float(rtc_settings.METRICS_INTERVAL)), name="rtcstream:metrics"
    )


def stop() -> asyncio.Task[None] | None:
    """Stop the sampler (lifespan shutdown); the task, to await, if it was running."""
    global _sampler
    task, _sampler = _sampler, None
    if task is None or task.done():
        return None
    with contextlib.suppress(RuntimeError):  # its loop is closed already
        task.cancel()
    return task


# -- session signals --------------------------------------------------------------------


async def _on_started(sender: Any, *, stream: Any, channel: str, **kwargs: Any) -> None:
    SESSIONS_STARTED.labels(stream.name or "", channel).inc()


async def _on_ended(
    sender: Any, *, stream: Any, channel: str, reason: str, state: str, **kwargs: Any
) -> None:
    name = stream.name or ""
    SESSIONS_ENDED.labels(name, channel, reason, state).inc()
    if reason.startswith("handler_error"):
        HANDLER_ERRORS.labels(name, reason.partition(":")[2].strip() or "unknown").inc()


def _connect() -> None:
    from django_rtcstream import signals

    signals.session_started.connect(_on_started, dispatch_uid="rtcstream.metrics.started")
    signals.session_ended.connect(_on_ended, dispatch_uid="rtcstream.metrics.ended")


if prometheus_client is not None:
    _connect()


# -- exposition -------------------------------------------------------------------------


def exposition(accept: str | None = None) -> tuple[bytes, str]:
    """The metrics in Prometheus' text format (or OpenMetrics, if ``accept``, the
    scraper's ``Accept`` header, asks for it), and its content type.

    Multiprocess mode: every worker's files in ``PROMETHEUS_MULTIPROC_DIR`` (raises
    ``FileNotFoundError`` if it does not exist); else this process's registry.
    """
    assert prometheus_client is not None
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept or "")
    if multiprocess():
        from prometheus_client import multiprocess as mp

        path = os.environ[MULTIPROC_ENV]
        if not os.path.isdir(path):
            raise FileNotFoundError(path)
        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        return encoder(registry), content_type
    return encoder(REGISTRY), content_type
