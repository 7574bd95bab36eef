"""Offline stop-word spotting: does an utterance *begin* with one of a few phrases?

``ReplyOnStopWords`` needs a yes/no and, for "computer, what time is it", where
the stop word ends (the rest is the request). Open decoding with PocketSphinx's
n-gram model is far too weak for this (measured on espeak-ng speech: "computer
what time is it" -> "you lie"), and its keyphrase search missed most stop
words at any threshold. What works is a small JSGF grammar: an utterance is
either a stop word followed by any of a few dozen common filler words, or
filler words alone. The decoder then has to *choose* between the stop word and
everything else for the first word, and the word segmentation gives the end of
the stop word. Measured on four espeak-ng voices, "assistant", "stop" and
"robot" were found at the start of 16 of 16 utterances with no false
detection on 24 utterances without them; "computer" is hard for the en-US
model on synthetic speech (found in 4 of 16).

Telephone audio (8 kHz) is out of reach of the wheel's wideband model: on
espeak-ng speech at 8 kHz, plain or through mu-law, it found none of the stop
words it finds at 16 kHz; an 8 kHz acoustic model can be passed as ``model_path``.

Decoding runs with narrow beams, about 5% of the audio's duration on one core;
only the first ``MAX_AUDIO_S`` seconds of an utterance are decoded.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from django_rtcstream.speech.audio import mono_int16, resample_int16
from django_rtcstream.speech.errors import SpeechModelUnavailable

__all__ = ["PocketSphinxStopWords", "StopWordHit", "StopWordSpotter", "get_stop_word_spotter"]

RATE = 16000
FRAME_S = 0.01  # PocketSphinx's frame step
PAD_S = 0.3  # silence added before the audio so the recogniser's estimates settle
MAX_AUDIO_S = 2.0  # FastRTC listens for its stop words in the last 2 s too
# Words that compete with the stop words for the first word of an utterance, and absorb the
# rest of it. Common English words of several shapes; a stop word's own words are left out.
FILLERS = (
    "a",
    "the",
    "to",
    "of",
    "and",
    "i",
    "you",
    "it",
    "is",
    "in",
    "that",
    "what",
    "on",
    "this",
    "for",
    "be",
    "with",
    "have",
    "do",
    "not",
    "are",
    "at",
    "so",
    "we",
    "he",
    "but",
    "they",
    "my",
    "one",
    "can",
    "all",
    "there",
    "how",
    "me",
    "turn",
    "light",
    "time",
    "come",
    "put",
    "two",
    "tell",
    "story",
    "hello",
    "please",
    "could",
    "would",
    "like",
)
_WORD = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True)
class StopWordHit:
    """A stop word heard at the start of some audio: which one, and where it ends (seconds)."""

    phrase: str
    end_s: float


@runtime_checkable
class StopWordSpotter(Protocol):
    """What ``ReplyOnStopWords(spotter=...)`` needs: the stop word an utterance begins with."""

    def find(self, audio: tuple[int, NDArray[Any]]) -> StopWordHit | None:
        """The stop word ``audio`` begins with, or None."""
        ...


def normalise_phrases(phrases: Sequence[str]) -> tuple[str, ...]:
    """Lower-case word sequences, punctuation dropped, duplicates removed (order kept)."""
    if isinstance(phrases, str):
        raise TypeError("stop_words must be a list of strings, not one string")
    out = [" ".join(_WORD.findall(str(p).lower())) for p in phrases]
    kept = tuple(dict.fromkeys(p for p in out if p))
    if not kept:
        raise ValueError("stop_words must hold at least one word")
    return kept


class PocketSphinxStopWords:
    """Spots stop words with PocketSphinx and a grammar (see the module docstring).

    One decoder, used under a lock (it is not thread-safe); build it through
    :func:`get_stop_word_spotter` to share it among the sessions of a process.

    Args:
        stop_words: the phrases; every word must be in the dictionary.
        model_path: a PocketSphinx acoustic model directory (default: the wheel's en-US).
        dictionary: a pronunciation dictionary (default: the wheel's).
    """

    def __init__(
        self,
        stop_words: Sequence[str],
        model_path: str | Path | None = None,
        dictionary: str | Path | None = None,
    ) -> None:
        try:
            import pocketsphinx
        except ImportError as exc:
            raise SpeechModelUnavailable(
                "ReplyOnStopWords recognises its stop words with the 'pocketsphinx' package: "
                "pip install 'django-rtcstream[stt]'"
            ) from exc
        self.stop_words = normalise_phrases(stop_words)
        base = Path(pocketsphinx.get_model_path()) / "en-us"
        hmm = Path(model_path) if model_path is not None else base / "en-us"
        dict_file = Path(dictionary) if dictionary is not None else base / "cmudict-en-us.dict"
        for what, path in (("model_path", hmm), ("dictionary", dict_file)):
            if not path.exists():
                raise SpeechModelUnavailable(f"PocketSphinx {what} {str(path)!r} does not exist")
        self._decoder: Any = pocketsphinx.Decoder(
            hmm=str(hmm),
            dict=str(dict_file),
            lm=None,
            samprate=RATE,
            loglevel="FATAL",
            # Narrow beams: wide ones make a looping grammar 50x slower for the same answers.
            beam=1e-20,
            wbeam=1e-15,
            pbeam=1e-20,
        )
        words = {w for p in self.stop_words for w in p.split()}
        missing = sorted(w for w in words if self._decoder.lookup_word(w) is None)
        if missing:
            raise ValueError(
                "not in the PocketSphinx dictionary, so cannot be recognised as stop words: "
                + ", ".join(missing)
            )
        fillers = [w for w in FILLERS if w not in words]
        stops = " | ".join(f"( {p} )" for p in self.stop_words)
        grammar = (
            "#JSGF V1.0;\ngrammar stopwords;\n"
            f"<filler> = {' | '.join(fillers)};\n"
            f"<stop> = {stops};\n"
            "public <utterance> = ( <stop> <filler>* ) | ( <filler>+ );\n"
        )
        self._decoder.add_jsgf_string("stopwords", grammar)
        self._decoder.activate_search("stopwords")
        self._lock = threading.Lock()

    def find(self, audio: tuple[int, NDArray[Any]]) -> StopWordHit | None:
        """The stop word the audio begins with, and where it ends; None if it does not."""
        rate, array = audio
        samples = mono_int16(array)[: int(MAX_AUDIO_S * int(rate))]
        samples = resample_int16(samples, int(rate), RATE)
        if len(samples) < RATE // 10:
            return None
        pad = np.zeros(int(PAD_S * RATE), np.int16)
        data = np.concatenate([pad, samples, pad]).tobytes()
        with self._lock:
            self._decoder.start_utt()
            try:
                self._decoder.process_raw(data, full_utt=True)
            finally:
                self._decoder.end_utt()
            segments = [
                (re.sub(r"\(\d+\)$", "", s.word), s.end_frame)
                for s in (self._decoder.seg() or [])
                if not s.word.startswith(("<", "[", "+"))
            ]
        heard = [w for w, _ in segments]
        for phrase in self.stop_words:
            words = phrase.split()
            if heard[: len(words)] == words:
                end_frame = segments[len(words) - 1][1] + 1
                return StopWordHit(phrase, max(0.0, end_frame * FRAME_S - PAD_S))
        return None


_cache: dict[tuple[Any, ...], PocketSphinxStopWords] = {}
_cache_lock = threading.Lock()


def get_stop_word_spotter(
    stop_words: Sequence[str],
    model_path: str | Path | None = None,
    dictionary: str | Path | None = None,
) -> PocketSphinxStopWords:
    """The process's spotter for these stop words (built once, shared by every session)."""
    key = (
        normalise_phrases(stop_words),
        str(model_path) if model_path is not None else None,
        str(dictionary) if dictionary is not None else None,
    )
    with _cache_lock:
        found = _cache.get(key)
        if found is None:
            found = PocketSphinxStopWords(stop_words, model_path, dictionary)
            _cache[key] = found
        return found
