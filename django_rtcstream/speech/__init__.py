"""Offline speech helpers with FastRTC's names: ``get_stt_model`` and ``get_tts_model``.

Nothing here downloads anything: speech-to-text is PocketSphinx with the model
its wheel ships (``pip install django-rtcstream[stt]``), text-to-speech is the
``espeak-ng`` program (``apt-get install espeak-ng``). Other backends are
refused with a message saying what to install or pass.
"""

from __future__ import annotations

from django_rtcstream.speech.errors import SpeechModelUnavailable
from django_rtcstream.speech.stop_words import (
    PocketSphinxStopWords,
    StopWordHit,
    StopWordSpotter,
    get_stop_word_spotter,
)
from django_rtcstream.speech.stt import PocketSphinxSTT, STTModel, get_stt_model, stt_for_chunks
from django_rtcstream.speech.tts import EspeakTTS, EspeakTTSOptions, TTSModel, get_tts_model

__all__ = [
    "EspeakTTS",
    "EspeakTTSOptions",
    "PocketSphinxSTT",
    "PocketSphinxStopWords",
    "STTModel",
    "SpeechModelUnavailable",
    "StopWordHit",
    "StopWordSpotter",
    "TTSModel",
    "get_stop_word_spotter",
    "get_stt_model",
    "get_tts_model",
    "stt_for_chunks",
]
