"""``ReplyOnPause``: call a generator with each whole utterance, when the person pauses.

FastRTC's handler, with its names, arguments and defaults, rebuilt so that:

* nothing is lost: the utterance handed to ``fn`` starts ``speech_pad_ms``
  before the detected start of speech (FastRTC drops the audio before the
  0.6 s chunk that noticed it, 120-190 ms of the first word);
* the turn ends a fixed silence after speech (0.5 s by default, see
  :mod:`~django_rtcstream.turn_taking.options`), judged window by window with
  a VAD state kept for the whole session, so a breath does not end it;
* speech that starts during a reply stops it at once (``can_interrupt=True``):
  the generator is stopped and the audio queued for the client dropped, with
  a ``clear`` to WebSocket and Twilio clients; with ``can_interrupt=False``
  speech is ignored until the reply has finished *playing*;
* ``emit`` waits on a condition; an idle session costs nothing.

Threads: ``receive`` runs in the handler pool (frames in order), ``emit`` on
the session's own emit thread, and each reply's generator on a producer
thread of its own (an async generator is stepped on the session's event loop
from it), which keeps about a second of reply audio ready so that a
generator that pauses between sentences does not make the reply stutter.

Over 450 lines on purpose: it is one class, and those three threads share the
turn's state (the reply queue, the current reply, the interrupt) under one
condition; split into modules, each part would reach into the others' locks.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy as copy_module
import inspect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from django_rtcstream.handlers import AdditionalOutputs, CloseStream, StreamHandler
from django_rtcstream.turn_taking.detector import SpeechStarted, TurnDetector, TurnEnded
from django_rtcstream.turn_taking.options import (
    AlgoOptions,
    ModelOptions,
    PauseDetectionModel,
    SileroVadOptions,
)

__all__ = ["ReplyFnGenerator", "ReplyOnPause"]

logger = logging.getLogger("django_rtcstream.turn_taking")

ReplyFnGenerator = Callable[..., Any]
"""FastRTC's name for ``fn``: ``fn((sample_rate, audio), *inputs)`` returning a
generator or async generator of audio chunks, ``AdditionalOutputs`` or ``CloseStream``."""

LOOKAHEAD_S = 1.0  # seconds of reply audio the producer keeps ready ahead of playback
PIECE_S = 0.02  # reply audio is handed to the session in 20 ms pieces (one output frame)
IDLE_WAKE_S = 5.0  # an idle emit() re-checks that its session lives this often
CLOSE_TIMEOUT_S = 1.0


class _Raise:
    """An exception from ``fn``, re-raised by ``emit`` in order (the session fails)."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


@dataclass
class _Reply:
    """One run of ``fn`` (a turn) or ``startup_fn`` (the greeting)."""

    kind: str  # "turn" or "startup"
    number: int
    turn: TurnEnded | None
    audio: tuple[int, np.ndarray] | None
    interrupted: bool = False
    done: bool = False
    first_audio_at: float | None = None
    future: Any = None  # the async generator step in flight
    started_wall: float = field(default_factory=time.monotonic)


class ReplyOnPause(StreamHandler):
    """Reply to each utterance once the speaker pauses (FastRTC's ``ReplyOnPause``).

    Args:
        fn: ``fn((sample_rate, audio), *inputs)``, a generator (or async
            generator) function called once per turn with the whole utterance
            (``audio`` is int16 of shape ``(1, n)`` at ``input_sample_rate``);
            it yields ``(sample_rate, array)`` chunks, ``AdditionalOutputs``,
            both in a tuple, or ``CloseStream``.
        startup_fn: called once per session with the inputs (``startup_fn(*inputs)``);
            what it yields plays like a reply (a greeting).
        algo_options: :class:`AlgoOptions` (when a turn starts and ends).
        model_options: :class:`SileroVadOptions` (or the options of ``model``).
        can_interrupt: speech during a reply stops it (True) or is ignored
            until the reply has finished playing (False).
        expected_layout, output_sample_rate, output_frame_size, input_sample_rate:
            as for every :class:`StreamHandler`.
        model: a :class:`PauseDetectionModel`; default the bundled Silero
            (:func:`get_silero_model`), loaded here so a missing ``vad``
            extra fails when the project starts.
        needs_args: wait for the client's input values before the first
            reply even if ``fn`` takes only the audio.
    """

    def __init__(
        self,
        fn: ReplyFnGenerator,
        startup_fn: Callable[..., Any] | None = None,
        algo_options: AlgoOptions | None = None,
        model_options: ModelOptions | None = None,
        can_interrupt: bool = True,
        expected_layout: Literal["mono", "stereo"] = "mono",
        output_sample_rate: int = 24000,
        output_frame_size: int | None = None,
        input_sample_rate: int = 48000,
        model: PauseDetectionModel | None = None,
        needs_args: bool = False,
    ) -> None:
        super().__init__(expected_layout, output_sample_rate, output_frame_size, input_sample_rate)
        if not callable(fn):
            raise TypeError("ReplyOnPause(fn): fn must be a (async) generator function")
        if model is None:
            from django_rtcstream.turn_taking.silero import get_silero_model

            model = get_silero_model()
        self.fn = fn
        self.startup_fn = startup_fn
        self.algo_options = algo_options or AlgoOptions()
        self.model_options = model_options or SileroVadOptions()
        self.can_interrupt = can_interrupt
        self.model = model
        self.needs_args = needs_args
        self.is_async = inspect.isasyncgenfunction(fn)
        try:
            params = len(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            params = 1
        self._needs_additional_inputs = needs_args or params > 1
        self._fresh()

    # -- per-session state ---------------------------------------------------------------

    def _fresh(self) -> None:
        self.turns = 0
        self.interruptions = 0
        self._detector = TurnDetector(
            self.model,
            self.algo_options,
            self.model_options,
            self.input_sample_rate,
            2 if self.expected_layout == "stereo" else 1,
        )
        self._detector_lock = threading.Lock()
        self._cond = threading.Condition()
        self._items: deque[Any] = deque()
        self._queued_s = 0.0  # seconds of reply audio in _items
        self._jobs: deque[_Reply] = deque(maxlen=1)  # the newest turn waiting for its reply
        self._reply: _Reply | None = None
        self._closed = False
        self._started_up = False

    def copy(self) -> ReplyOnPause:
        """A handler for one session; it shares the VAD model and the options."""
        from django_rtcstream.handlers import ArgsSet

        clone = copy_module.copy(self)
        clone.latest_args = ["__webrtc_value__"]
        clone.args_set = ArgsSet()
        clone._port = None
        clone._channel = None
        clone.phone_mode = False
        clone._fresh()
        return clone

    def session_counters(self) -> dict[str, int]:
        return {"turns": self.turns, "interruptions": self.interruptions}

    @property
    def responding(self) -> bool:
        """A reply is being generated or played."""
        return self._reply is not None or bool(self._jobs)

    # -- input ---------------------------------------------------------------------------

    def receive(self, frame: tuple[int, np.ndarray]) -> None:
        _, array = frame
        with self._detector_lock:
            if not self.can_interrupt:
                self._detector.set_listening(not self.responding)
            events = self._detector.feed(array)
        for event in events:
            if isinstance(event, SpeechStarted):
                self._on_speech_started(event)
            else:
                self._on_turn_ended(event)

    def _on_speech_started(self, event: SpeechStarted) -> None:
        self.send_message_sync({"type": "log", "data": "started_talking"})
        self._event("speech_start", self.turns + 1, event.onset_s, detected=event.detected_s)
        if self.can_interrupt and self.responding:
            self.interrupt()

    def _on_turn_ended(self, turn: TurnEnded) -> None:
        self.turns += 1
        number = self.turns
        self._event("speech_end", number, turn.speech_end_s)
        self._event("pause_detected", number, turn.detected_s, reason=turn.reason)
        self.send_message_sync({"type": "log", "data": "pause_detected"})
        self._queue(_Reply("turn", number, turn, (self.input_sample_rate, turn.audio)))

    def _queue(self, reply: _Reply) -> None:
        with self._cond:
            self._jobs.append(reply)
            self._cond.notify_all()

    def trigger_response(self, webrtc_id: str | None = None) -> None:
        """Reply now to what was heard since the last turn (FastRTC's; e.g. a submit button)."""
        with self._detector_lock:
            audio, start = self._detector.take_audio()
            now = self._detector.now_s
        self.turns += 1
        turn = TurnEnded(audio, start, start, now, now, "triggered")
        self._queue(_Reply("turn", self.turns, turn, (self.input_sample_rate, audio)))

    def interrupt(self) -> bool:
        """Stop the reply being generated or played, and drop its queued audio (barge-in)."""
        with self._cond:
            reply = self._reply
            if reply is None or reply.interrupted:
                return False
            reply.interrupted = True
            self._reply = None
            self._items.clear()
            self._queued_s = 0.0
            future = reply.future
            self._cond.notify_all()
        self.clear_queue()
        if future is not None:
            future.cancel()
        if reply.kind == "turn":
            self.interruptions += 1
        self._event("interrupted", reply.number, self._detector.now_s, reply=reply.kind)
        self._log_reply(reply)
        return True

    # -- output --------------------------------------------------------------------------

    def start_up(self) -> None:
        if self.startup_fn is not None and not self._started_up:
            self._started_up = True
            self._queue(_Reply("startup", 0, None, None))

    def emit(self) -> Any:
        with self._cond:
            while True:
                if self._closed or (self._port is not None and self._port.ended):
                    return None
                if self._items:
                    item = self._items.popleft()
                    if isinstance(item, tuple):
                        self._queued_s -= len(item[1]) / item[0]
                        self._cond.notify_all()  # the producer may go on
                        reply = self._reply
                        if reply is not None and reply.first_audio_at is None:
                            self._first_audio(reply)
                    elif isinstance(item, _Raise):
                        raise item.exc
                    return item
                reply = self._reply
                if reply is None:
                    if self._jobs:
                        self._start(self._jobs.popleft())
                        continue
                    self._cond.wait(IDLE_WAKE_S)
                    continue
                if not reply.done:
                    self._cond.wait(IDLE_WAKE_S)
                    continue
                # All of the reply is out of our hands: it ends when it has been played.
                queued = self._output_queued_s()
                if queued > 0:
                    self._cond.wait(queued + 0.005)
                    continue
                self._reply = None
                self._finished(reply)

    def _output_queued_s(self) -> float:
        port = self._port
        return port.output_queued_seconds if port is not None else 0.0

    def _first_audio(self, reply: _Reply) -> None:
        now = self._detector.now_s
        reply.first_audio_at = now
        self.send_message_sync({"type": "log", "data": "response_starting"})
        extra: dict[str, Any] = {"reply": reply.kind}
        if reply.turn is not None:
            extra["latency_s"] = round(now - reply.turn.speech_end_s, 3)
        self._event("reply_audio", reply.number, now, **extra)

    def _finished(self, reply: _Reply) -> None:
        if reply.first_audio_at is None:
            self.send_message_sync({"type": "log", "data": "response_starting"})
        self._event("reply_end", reply.number, self._detector.now_s, reply=reply.kind)
        self._log_reply(reply)

    def _start(self, reply: _Reply) -> None:
        """Run ``fn`` for the reply on a producer thread (called with the lock held)."""
        self._reply = reply
        context = contextvars.copy_context()
        thread = threading.Thread(
            target=context.run,
            args=(self._produce, reply),
            name=f"rtcstream-reply-{reply.number}",
            daemon=True,
        )
        thread.start()

    # -- the producer --------------------------------------------------------------------

    def _call_fn(self, reply: _Reply) -> Any:
        if reply.kind == "startup":
            assert self.startup_fn is not None
            if self._needs_additional_inputs:
                self.wait_for_args_sync()
            return self.startup_fn(*self.inputs)
        if self._needs_additional_inputs:
            self.wait_for_args_sync()
            return self.fn(reply.audio, *self.inputs)
        return self.fn(reply.audio)

    def _produce(self, reply: _Reply) -> None:
        gen: Any = None
        try:
            gen = self._call_fn(reply)
            if gen is None:
                return
            if not (
                inspect.isasyncgen(gen) or inspect.isgenerator(gen) or hasattr(gen, "__next__")
            ):
                self._accept(reply, gen)
                return
            while True:
                with self._cond:
                    while (
                        not reply.interrupted and not self._closed and self._queued_s >= LOOKAHEAD_S
                    ):
                        self._cond.wait(IDLE_WAKE_S)
                    if reply.interrupted or self._closed:
                        return
                try:
                    item = self._step(reply, gen)
                except (StopIteration, StopAsyncIteration):
                    return
                except asyncio.CancelledError:
                    return  # interrupted while the async generator was awaiting
                if not self._accept(reply, item):
                    return
        except Exception as exc:
            with self._cond:
                if self._reply is reply and not reply.interrupted:
                    self._items.append(_Raise(exc))
            if not reply.interrupted:
                logger.warning("fn of ReplyOnPause raised in reply %s", reply.number, exc_info=exc)
        finally:
            if gen is not None and (reply.interrupted or self._closed):
                self._close(gen)
            with self._cond:
                reply.done = True
                self._cond.notify_all()

    def _step(self, reply: _Reply, gen: Any) -> Any:
        if not inspect.isasyncgen(gen):
            return next(gen)
        loop = self.loop
        if loop is None:
            raise RuntimeError("an async fn needs the session's event loop")
        future = asyncio.run_coroutine_threadsafe(gen.__anext__(), loop)
        with self._cond:
            reply.future = future
            if reply.interrupted:
                future.cancel()
        try:
            return future.result()
        except Exception as exc:  # concurrent.futures.CancelledError is not asyncio's
            if future.cancelled():
                raise asyncio.CancelledError from exc
            raise
        finally:
            reply.future = None

    def _close(self, gen: Any) -> None:
        try:
            if inspect.isasyncgen(gen):
                loop = self.loop
                if loop is not None and not loop.is_closed():
                    asyncio.run_coroutine_threadsafe(gen.aclose(), loop).result(CLOSE_TIMEOUT_S)
            elif hasattr(gen, "close"):
                gen.close()
        except Exception:
            logger.debug("Closing an interrupted reply generator raised", exc_info=True)

    def _accept(self, reply: _Reply, item: Any) -> bool:
        """Queue one item of the generator for emit(); False when the reply must stop."""
        from django_rtcstream.media.convert import _to_int16_mono, split_result

        if item is None:
            return True
        media, extra = split_result(item)
        pieces: list[tuple[int, np.ndarray]] = []
        if media is not None:
            if not (isinstance(media, tuple) and len(media) in (2, 3)):
                raise TypeError(f"fn must yield (sample_rate, array), got {type(media).__name__}")
            rate = int(media[0])
            samples = _to_int16_mono(media[1], media[2] if len(media) == 3 else None)
            step = max(1, int(rate * PIECE_S))
            pieces = [(rate, samples[k : k + step]) for k in range(0, len(samples), step)]
        if isinstance(extra, AdditionalOutputs) and self.phone_mode:
            # FastRTC: on a call, a reply's outputs become the inputs of the next turn.
            self.latest_args = ["__webrtc_value__", *extra.args]
        with self._cond:
            if self._reply is not reply or reply.interrupted:
                return False
            for piece in pieces:
                self._items.append(piece)
                self._queued_s += len(piece[1]) / piece[0]
            if extra is not None:
                self._items.append(extra)
            self._cond.notify_all()
        return not isinstance(extra, CloseStream)

    # -- lifecycle -----------------------------------------------------------------------

    def shutdown(self) -> None:
        with self._cond:
            self._closed = True
            reply = self._reply
            if reply is not None:
                reply.interrupted = True
                if reply.future is not None:
                    reply.future.cancel()
            self._cond.notify_all()

    # -- events --------------------------------------------------------------------------

    def _event(self, name: str, turn: int, at: float, **extra: Any) -> None:
        """One turn event, as a ``turn`` message: ``{"event", "turn", "at", ...}``.

        ``at`` is seconds of input audio since the session started.
        """
        data = {"event": name, "turn": turn, "at": round(at, 3), **extra}
        self.send_message_sync({"type": "turn", "data": data})
        logger.debug("turn event %s", data)

    def _log_reply(self, reply: _Reply) -> None:
        turn = reply.turn
        if turn is None:
            logger.info("Greeting %s", "interrupted" if reply.interrupted else "played")
            return
        latency = (
            f"{reply.first_audio_at - turn.speech_end_s:.2f} s"
            if reply.first_audio_at is not None
            else "none"
        )
        logger.info(
            "Turn %d: speech %.2f-%.2f s, pause detected +%.2f s, first reply audio %s, %s",
            reply.number,
            turn.onset_s,
            turn.speech_end_s,
            turn.detected_s - turn.speech_end_s,
            latency,
            "interrupted" if reply.interrupted else "played",
        )
