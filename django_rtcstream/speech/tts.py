"""Offline text-to-speech with FastRTC's interface, through Debian's ``espeak-ng`` program.

``get_tts_model()`` gives an object with ``tts(text)``, ``stream_tts(text)``
(async) and ``stream_tts_sync(text)``, as FastRTC's does; FastRTC's default
(Kokoro) downloads its weights, this one runs the ``espeak-ng`` program
(``apt-get install espeak-ng``), which synthesises a few seconds of speech in
tens of milliseconds. It runs as a subprocess, so no GPL code is linked into
the application, and each call is independent (safe from any thread).
Streaming goes sentence by sentence, so a reply starts playing after its first
sentence is synthesised.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import struct
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from django_rtcstream.speech.errors import SpeechModelUnavailable

__all__ = ["EspeakTTS", "EspeakTTSOptions", "TTSModel", "get_tts_model"]

TTS_MODELS = ("espeak-ng", "espeak")
ESPEAK_WPM = 175  # espeak-ng's default rate; speed=1.0
SYNTH_TIMEOUT_S = 60.0
_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n\s*\n|\n")

T_contra = TypeVar("T_contra", contravariant=True)


@runtime_checkable
class TTSModel(Protocol[T_contra]):
    """FastRTC's TTS protocol: whole text, async stream and sync stream of ``(rate, float32)``."""

    def tts(
        self, text: str, options: T_contra | None = None
    ) -> tuple[int, NDArray[np.float32]]: ...

    def stream_tts(
        self, text: str, options: T_contra | None = None
    ) -> AsyncIterator[tuple[int, NDArray[np.float32]]]: ...

    def stream_tts_sync(
        self, text: str, options: T_contra | None = None
    ) -> Iterator[tuple[int, NDArray[np.float32]]]: ...


@dataclass(frozen=True)
class EspeakTTSOptions:
    """How ``EspeakTTS`` speaks (the fields of FastRTC's ``KokoroTTSOptions`` that apply).

    Args:
        voice: an espeak-ng voice variant added to ``lang`` (``"klatt"``,
            ``"f2"``, ``"m3"``... see ``espeak-ng --voices=variant``); None for
            the language's own voice.
        speed: 1.0 is espeak-ng's normal rate (175 words a minute).
        lang: an espeak-ng language (``"en-us"``, ``"en"``, ``"fr"``... see
            ``espeak-ng --voices``).
        pitch: 0-99, 50 being espeak-ng's default.
    """

    voice: str | None = None
    speed: float = 1.0
    lang: str = "en-us"
    pitch: int = 50

    def arguments(self) -> list[str]:
        """The espeak-ng command-line options for these settings (checked)."""
        if not _NAME.match(self.lang):
            raise ValueError(f"not an espeak-ng language name: {self.lang!r}")
        if self.voice is not None and not _NAME.match(self.voice):
            raise ValueError(f"not an espeak-ng voice variant name: {self.voice!r}")
        if not 0.2 <= self.speed <= 4.0:
            raise ValueError(f"speed must be between 0.2 and 4.0, got {self.speed}")
        if not 0 <= self.pitch <= 99:
            raise ValueError(f"pitch must be between 0 and 99, got {self.pitch}")
        voice = self.lang if self.voice is None else f"{self.lang}+{self.voice}"
        return ["-v", voice, "-s", str(round(ESPEAK_WPM * self.speed)), "-p", str(self.pitch)]


def split_sentences(text: str) -> list[str]:
    """``text`` cut after each ``. ! ? ; :`` followed by space, and at line breaks."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def parse_wav(data: bytes) -> tuple[int, NDArray[np.int16]]:
    """Sample rate and mono int16 samples of espeak-ng's WAV output.

    espeak-ng writes its header before it knows the length (sizes of
    0x7fffffff), so the data chunk is read to the end of the output rather
    than to its declared size.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SpeechModelUnavailable("espeak-ng did not write a WAV file to its output")
    pos = 12
    rate = channels = bits = 0
    while pos + 8 <= len(data):
        kind, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = pos + 8
        if kind == b"fmt ":
            fmt, channels, rate = struct.unpack("<HHI", data[body : body + 8])
            bits = struct.unpack("<H", data[body + 14 : body + 16])[0]
            if fmt != 1 or bits != 16:
                raise SpeechModelUnavailable(f"unexpected espeak-ng WAV format {fmt}/{bits} bits")
        elif kind == b"data":
            if not rate:
                break
            end = min(len(data), body + size)
            end -= (end - body) % 2
            samples = np.frombuffer(data[body:end], dtype="<i2").astype(np.int16)
            if channels > 1:
                samples = samples[: len(samples) - len(samples) % channels]
                samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
            return rate, samples
        pos = body + size + (size % 2)
    raise SpeechModelUnavailable("espeak-ng's WAV output has no audio data")


def _float(samples: NDArray[np.int16]) -> NDArray[np.float32]:
    return samples.astype(np.float32) / np.float32(32768.0)


class EspeakTTS:
    """Text to speech with the ``espeak-ng`` program (one subprocess per sentence).

    Audio comes back as ``(sample_rate, float32 array in [-1, 1))`` like
    FastRTC's TTS models; espeak-ng's rate is 22050 Hz. Handlers can yield
    it as it is (output is resampled to the stream's rate).

    Args:
        executable: the program to run; default ``espeak-ng`` (or ``espeak``)
            on ``PATH``.
        options: default ``EspeakTTSOptions`` for calls that pass none.
    """

    def __init__(
        self, executable: str | Path | None = None, options: EspeakTTSOptions | None = None
    ) -> None:
        found = (
            shutil.which(str(executable))
            if executable is not None
            else shutil.which("espeak-ng") or shutil.which("espeak")
        )
        if found is None:
            raise SpeechModelUnavailable(
                f"The espeak-ng text-to-speech model needs the {str(executable or 'espeak-ng')!r} "
                "program: apt-get install espeak-ng (Debian/Ubuntu), brew install espeak-ng "
                "(macOS), or pass executable= its path"
            )
        self.executable = found
        self.options = options or EspeakTTSOptions()
        self.options.arguments()  # checked now, not on the first reply

    def _command(self, options: EspeakTTSOptions | None) -> list[str]:
        opts = options or self.options
        # Text goes on stdin (-b 1: UTF-8), so none of it can be read as an option.
        return [self.executable, "--stdout", "-b", "1", *opts.arguments()]

    def _synth(self, sentence: str, options: EspeakTTSOptions | None) -> tuple[int, NDArray[Any]]:
        done = subprocess.run(
            self._command(options),
            input=sentence.encode("utf-8"),
            capture_output=True,
            timeout=SYNTH_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"espeak-ng failed ({done.returncode}): {done.stderr.decode(errors='replace')}"
            )
        return parse_wav(done.stdout)

    def stream_tts_sync(
        self, text: str, options: EspeakTTSOptions | None = None
    ) -> Iterator[tuple[int, NDArray[np.float32]]]:
        """One ``(rate, float32)`` chunk per sentence of ``text``."""
        for sentence in split_sentences(text):
            rate, samples = self._synth(sentence, options)
            yield rate, _float(samples)

    async def stream_tts(
        self, text: str, options: EspeakTTSOptions | None = None
    ) -> AsyncIterator[tuple[int, NDArray[np.float32]]]:
        """Like ``stream_tts_sync`` without blocking the event loop.

        Closing the generator early (a barge-in) kills the sentence being
        synthesised.
        """
        command = self._command(options)
        for sentence in split_sentences(text):
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                out, err = await asyncio.wait_for(
                    proc.communicate(sentence.encode("utf-8")), SYNTH_TIMEOUT_S
                )
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            if proc.returncode != 0:
                raise RuntimeError(
                    f"espeak-ng failed ({proc.returncode}): {err.decode(errors='replace')}"
                )
            rate, samples = parse_wav(out)
            yield rate, _float(samples)

    def tts(
        self, text: str, options: EspeakTTSOptions | None = None
    ) -> tuple[int, NDArray[np.float32]]:
        """All of ``text`` as one clip: the ``stream_tts_sync`` chunks joined."""
        rate = 22050
        parts: list[NDArray[np.float32]] = []
        for chunk_rate, chunk in self.stream_tts_sync(text, options):
            rate = chunk_rate
            parts.append(chunk)
        return rate, (np.concatenate(parts) if parts else np.zeros(0, np.float32))


_cache: dict[tuple[Any, ...], EspeakTTS] = {}
_cache_lock = threading.Lock()


def get_tts_model(
    model: str = "espeak-ng",
    model_path: str | Path | None = None,
    **kwargs: Any,
) -> TTSModel[EspeakTTSOptions]:
    """An offline text-to-speech model, built once per process and shared.

    Args:
        model: ``"espeak-ng"`` (the default; the program must be installed).
            FastRTC's names (``"kokoro"``...) download weights or call a paid
            API, so they are refused with a message saying so.
        model_path: for ``espeak-ng``, the program's path (same as
            ``executable=``); never a hub name or URL.
        **kwargs: ``options=EspeakTTSOptions(...)`` for the default options.

    Raises:
        SpeechModelUnavailable: unknown name, or the program is missing.
    """
    if model not in TTS_MODELS:
        hint = ""
        if model in ("kokoro", "cartesia"):
            hint = (
                f" FastRTC's {model!r} downloads weights or calls a web API, which "
                "django-rtcstream never does."
            )
        raise SpeechModelUnavailable(
            f"Unknown text-to-speech model {model!r}; available offline: espeak-ng "
            f"(apt-get install espeak-ng).{hint}"
        )
    executable = kwargs.pop("executable", model_path)
    options = kwargs.pop("options", None)
    if kwargs:
        raise TypeError(f"unexpected arguments for espeak-ng: {', '.join(sorted(kwargs))}")
    key = (str(executable) if executable is not None else None, options)
    with _cache_lock:
        found = _cache.get(key)
        if found is None:
            found = EspeakTTS(executable, options)
            _cache[key] = found
        return found
