"""Offline speech-to-text with FastRTC's interface: ``get_stt_model().stt((rate, audio))``.

FastRTC's ``get_stt_model()`` fetches Moonshine weights from a model hub on
first use. Here the default is PocketSphinx, whose wheel carries an en-US
acoustic model, dictionary and language model, so recognition works on a
machine with no network (``pip install django-rtcstream[stt]``). It is a
small, fast, CPU-only recogniser: fine for commands, stop words and short
answers, weak for open dictation. ``phrases=`` restricts it to a fixed set of
phrases (a JSGF grammar), which makes commands far more reliable.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from django_rtcstream.speech.audio import mono_int16, resample_int16
from django_rtcstream.speech.errors import SpeechModelUnavailable

__all__ = ["PocketSphinxSTT", "STTModel", "get_stt_model", "stt_for_chunks"]

STT_SAMPLE_RATE = 16000
STT_MODELS = ("pocketsphinx",)
_WORD = re.compile(r"[a-z0-9']+")


@runtime_checkable
class STTModel(Protocol):
    """What ``ReplyOnStopWords`` and handlers need of a recogniser (FastRTC's protocol)."""

    def stt(self, audio: tuple[int, NDArray[Any]]) -> str: ...


class PocketSphinxSTT:
    """PocketSphinx recogniser loaded from files on disk (by default, its wheel's en-US model).

    One decoder per model object, used under a lock: ``stt`` may be called from
    several handler threads at once and the decoder is not thread-safe. A
    decode takes a few percent of the audio's duration, so sharing one
    decoder is cheap. Build it through ``get_stt_model`` to share it across
    sessions of a process.

    Args:
        model_path: a PocketSphinx acoustic model directory (holding ``mdef``,
            ``means``, ``variances``...). Default: the wheel's ``en-us``.
        dictionary: a pronunciation dictionary file. Default: the wheel's.
        language_model: an n-gram language model file (``.lm.bin`` or ARPA).
            Default: the wheel's ``en-us.lm.bin``. Ignored with ``phrases``.
        phrases: if given, only these phrases (any casing, punctuation ignored)
            can be recognised, and silence or anything else gives ``""``.
            Every word must be in the dictionary.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        dictionary: str | Path | None = None,
        language_model: str | Path | None = None,
        phrases: Sequence[str] | None = None,
    ) -> None:
        try:
            import pocketsphinx
        except ImportError as exc:
            raise SpeechModelUnavailable(
                "The pocketsphinx speech-to-text model needs the 'pocketsphinx' package: "
                "pip install 'django-rtcstream[stt]'"
            ) from exc
        base = Path(pocketsphinx.get_model_path()) / "en-us"
        hmm = Path(model_path) if model_path is not None else base / "en-us"
        dict_file = Path(dictionary) if dictionary is not None else base / "cmudict-en-us.dict"
        lm_file = Path(language_model) if language_model is not None else base / "en-us.lm.bin"
        for what, path in (("model_path", hmm), ("dictionary", dict_file)):
            if not path.exists():
                raise SpeechModelUnavailable(f"PocketSphinx {what} {str(path)!r} does not exist")
        if phrases is None and not lm_file.exists():
            raise SpeechModelUnavailable(
                f"PocketSphinx language_model {str(lm_file)!r} does not exist"
            )
        config: dict[str, Any] = {
            "hmm": str(hmm),
            "dict": str(dict_file),
            "samprate": STT_SAMPLE_RATE,
            "loglevel": "FATAL",
        }
        if phrases is None:
            config["lm"] = str(lm_file)
        else:
            config["lm"] = None
        self._lock = threading.Lock()
        self._decoder: Any = pocketsphinx.Decoder(**config)
        self.phrases: tuple[str, ...] | None = None
        if phrases is not None:
            self.phrases = tuple(_normalise_phrases(phrases))
            self._use_phrases(self.phrases)

    def _use_phrases(self, phrases: Sequence[str]) -> None:
        missing = sorted(
            {w for p in phrases for w in p.split() if self._decoder.lookup_word(w) is None}
        )
        if missing:
            raise ValueError(
                f"not in the PocketSphinx dictionary, so cannot be recognised: {', '.join(missing)}"
            )
        grammar = (
            "#JSGF V1.0;\ngrammar phrases;\npublic <phrase> = "
            + " | ".join(f"( {p} )" for p in phrases)
            + ";\n"
        )
        self._decoder.add_jsgf_string("phrases", grammar)
        self._decoder.activate_search("phrases")

    def stt(self, audio: tuple[int, NDArray[Any]]) -> str:
        """The words heard in ``(sample_rate, array)``, lower case, or ``""``.

        Any rate and layout a handler gets is accepted (resampled to 16 kHz
        mono int16 here).
        """
        sample_rate, array = audio
        samples = resample_int16(mono_int16(array), int(sample_rate), STT_SAMPLE_RATE)
        if not len(samples):
            return ""
        # Half a second of silence on both sides: the recogniser's noise and
        # cepstral estimates settle before the first word (an utterance cut
        # tight to speech otherwise loses its first word).
        pad = np.zeros(STT_SAMPLE_RATE // 2, np.int16)
        data = np.concatenate([pad, samples, pad]).tobytes()
        with self._lock:
            self._decoder.start_utt()
            try:
                self._decoder.process_raw(data, full_utt=True)
            finally:
                self._decoder.end_utt()
            hyp = self._decoder.hyp()
        if hyp is None:
            return ""
        words = [w for w in hyp.hypstr.split() if not w.startswith(("<", "["))]
        return " ".join(re.sub(r"\(\d+\)$", "", w) for w in words)


def _normalise_phrases(phrases: Sequence[str]) -> list[str]:
    if isinstance(phrases, str):
        raise TypeError("phrases must be a list of strings, not one string")
    out = []
    for phrase in phrases:
        words = _WORD.findall(str(phrase).lower())
        if words:
            out.append(" ".join(words))
    if not out:
        raise ValueError("phrases must hold at least one phrase with a word in it")
    return list(dict.fromkeys(out))


_cache: dict[tuple[Any, ...], STTModel] = {}
_cache_lock = threading.Lock()


def get_stt_model(
    model: str = "pocketsphinx",
    model_path: str | Path | None = None,
    **kwargs: Any,
) -> STTModel:
    """An offline speech-to-text model, loaded once per process and shared.

    Args:
        model: ``"pocketsphinx"`` (the default; the ``stt`` extra). FastRTC's
            names (``"moonshine/base"``...) download their weights, so they
            are refused with a message saying so.
        model_path: a local model directory; never a hub name or URL.
        **kwargs: passed to the model class (``PocketSphinxSTT``:
            ``dictionary``, ``language_model``, ``phrases``).

    Raises:
        SpeechModelUnavailable: unknown name, or its package or files missing.
    """
    if model not in STT_MODELS:
        hint = ""
        if model.startswith("moonshine"):
            hint = (
                " FastRTC's Moonshine downloads its weights from a model hub, which "
                "django-rtcstream never does."
            )
        raise SpeechModelUnavailable(
            f"Unknown speech-to-text model {model!r}; available offline: "
            f"{', '.join(STT_MODELS)} (pip install 'django-rtcstream[stt]').{hint}"
        )
    key = (model, str(model_path) if model_path is not None else None, _freeze(kwargs))
    with _cache_lock:
        found = _cache.get(key)
        if found is None:
            found = PocketSphinxSTT(model_path, **kwargs)
            _cache[key] = found
        return found


def _freeze(kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(
        sorted((k, tuple(v) if isinstance(v, (list, tuple)) else str(v)) for k, v in kwargs.items())
    )


def stt_for_chunks(
    stt_model: STTModel,
    audio: tuple[int, NDArray[Any]],
    chunks: Sequence[Mapping[str, int]],
) -> str:
    """Transcribe the ``{"start": i, "end": j}`` sample ranges of ``audio`` and join the texts.

    FastRTC's helper of the same name, for VAD chunks of one utterance.
    """
    sample_rate, array = audio
    samples = mono_int16(array)
    texts = [stt_model.stt((sample_rate, samples[c["start"] : c["end"]])) for c in chunks]
    return " ".join(t for t in texts if t)
