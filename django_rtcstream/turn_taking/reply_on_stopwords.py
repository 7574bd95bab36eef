"""``ReplyOnStopWords``: reply only to what is said after a stop word ("computer, ...").

FastRTC's handler, with its names, arguments and defaults. As in FastRTC,
nothing is answered until a stop word is heard, the ``stopword`` message is
sent when it is, ``fn`` gets the audio *after* the stop word once the person
pauses, and after each reply the stop word is needed again. Two ways to say it:

* "computer, what time is it" in one breath: the request is the rest of the
  utterance, from the end of the stop word;
* "computer" alone, then a pause: the next utterance is the request.

An utterance that does not begin with a stop word is ignored (no reply, no
``log`` messages). FastRTC transcribes a rolling 2 s buffer with Moonshine
(downloaded from a model hub) and looks for the words anywhere in it; here the
start of each utterance (its first 2 s, with the pre-roll) goes through an
offline PocketSphinx grammar (:mod:`django_rtcstream.speech.stop_words`),
which both decides and says where the stop word ends. It is checked
``EARLY_S`` after speech starts, so ``stopword`` is sent while the person is
still talking, and again when the utterance ends if it was shorter.

Barge-in: with ``can_interrupt=True`` a reply is cut when a stop word is heard
(other speech during a reply is not for the agent and leaves it playing), or
when speech starts after a lone stop word.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from django_rtcstream.speech.stop_words import (
    StopWordHit,
    StopWordSpotter,
    get_stop_word_spotter,
    normalise_phrases,
)
from django_rtcstream.turn_taking.detector import SpeechStarted, TurnEnded
from django_rtcstream.turn_taking.options import AlgoOptions, ModelOptions, PauseDetectionModel
from django_rtcstream.turn_taking.reply_on_pause import ReplyFnGenerator, ReplyOnPause

__all__ = ["ReplyOnStopWords"]

EARLY_S = 1.2  # seconds after the onset of speech at which the stop word is first looked for
MIN_REQUEST_S = 0.25  # speech after the stop word shorter than this is no request


class ReplyOnStopWords(ReplyOnPause):
    """Reply to what follows a stop word, once the speaker pauses (FastRTC's ``ReplyOnStopWords``).

    Args:
        fn: as for :class:`ReplyOnPause`; it gets the audio after the stop word.
        stop_words: words or phrases (any casing, punctuation ignored); every
            word must be in PocketSphinx's en-US dictionary, checked here.
        startup_fn, algo_options, model_options, can_interrupt, expected_layout,
        output_sample_rate, output_frame_size, input_sample_rate, model:
            as for :class:`ReplyOnPause`.
        needs_args: as for :class:`ReplyOnPause` (not in FastRTC's signature).
        spotter: a :class:`~django_rtcstream.speech.stop_words.StopWordSpotter`
            to use instead of PocketSphinx (not in FastRTC's signature).
    """

    def __init__(
        self,
        fn: ReplyFnGenerator,
        stop_words: Sequence[str],
        startup_fn: Callable[..., Any] | None = None,
        algo_options: AlgoOptions | None = None,
        model_options: ModelOptions | None = None,
        can_interrupt: bool = True,
        expected_layout: Literal["mono", "stereo"] = "mono",
        output_sample_rate: int = 24000,
        output_frame_size: int | None = None,
        input_sample_rate: int = 48000,
        model: PauseDetectionModel | None = None,
        *,
        needs_args: bool = False,
        spotter: StopWordSpotter | None = None,
    ) -> None:
        normalise_phrases(stop_words)  # a clear error now, not on the first utterance
        super().__init__(
            fn,
            startup_fn=startup_fn,
            algo_options=algo_options,
            model_options=model_options,
            can_interrupt=can_interrupt,
            expected_layout=expected_layout,
            output_sample_rate=output_sample_rate,
            output_frame_size=output_frame_size,
            input_sample_rate=input_sample_rate,
            model=model,
            needs_args=needs_args,
        )
        self.stop_words = list(stop_words)
        self.spotter: StopWordSpotter = spotter or get_stop_word_spotter(self.stop_words)

    def _fresh(self) -> None:
        super()._fresh()
        self.stop_word_detected = False  # FastRTC's name: the next utterance is the request
        self._hit: StopWordHit | None = None  # the stop word of the utterance in progress
        self._looked_early = False

    # -- input ---------------------------------------------------------------------------

    def receive(self, frame: tuple[int, np.ndarray]) -> None:
        super().receive(frame)
        if self._hit is None and not self._looked_early:
            with self._detector_lock:
                so_far = self._detector.turn_so_far()
                now = self._detector.now_s
            if so_far is not None and now - so_far[2] >= EARLY_S:
                self._looked_early = True
                self._hit = self._spot(so_far[0], so_far[1])

    def _on_speech_started(self, event: SpeechStarted) -> None:
        self._hit = None
        self._looked_early = False
        if self.stop_word_detected:
            super()._on_speech_started(event)  # the request: started_talking, barge-in

    def _on_turn_ended(self, turn: TurnEnded) -> None:
        hit = self._hit if self._hit is not None else self._spot(turn.audio, turn.start_s)
        self._hit = None
        if hit is None:
            if self.stop_word_detected:
                self.stop_word_detected = False
                super()._on_turn_ended(turn)
            return
        if turn.speech_end_s - hit.end_s < MIN_REQUEST_S:
            self.stop_word_detected = True  # a lone stop word: the next utterance is the request
            return
        self.stop_word_detected = False
        skip = max(0, round((hit.end_s - turn.start_s) * self.input_sample_rate))
        channels = 2 if self.expected_layout == "stereo" else 1
        rest = turn.audio[:, skip * channels :]
        super()._on_turn_ended(
            TurnEnded(
                rest,
                hit.end_s,
                max(turn.onset_s, hit.end_s),
                turn.speech_end_s,
                turn.detected_s,
                turn.reason,
            )
        )

    def _spot(self, audio: np.ndarray, start_s: float) -> StopWordHit | None:
        """Look for a stop word at the start of ``audio`` (which starts at ``start_s``)."""
        found = self.spotter.find((self.input_sample_rate, audio))
        if found is None:
            return None
        hit = StopWordHit(found.phrase, start_s + found.end_s)
        self.send_message_sync({"type": "stopword", "data": ""})
        self._event("stopword", self.turns + 1, hit.end_s, phrase=hit.phrase)
        if self.can_interrupt and self.responding:
            self.interrupt()
        return hit

    def reset(self) -> None:
        """Forget the stop word: the next request needs it again (FastRTC's ``reset``)."""
        super().reset()
        self.stop_word_detected = False
        self._hit = None
