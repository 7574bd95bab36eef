"""The example voice agents: speak, and hear back what was understood, all offline.

=============  ===========  ============  =============================================
name           modality     mode          handler
=============  ===========  ============  =============================================
say-back       audio        send-receive  ReplyOnPause: PocketSphinx hears, espeak-ng says it back
assistant      audio        send-receive  ReplyOnStopWords: the same, only after "assistant"
=============  ===========  ============  =============================================

They live apart from ``streams.py`` because building them loads the VAD
(``pip install 'django-rtcstream[vad,stt]'`` and ``apt-get install
espeak-ng``): without those, only these two streams are reported by
``manage.py check``, the others still run. The built-in page shows the turn
events (talking, thinking, speaking, interrupted) as they arrive.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from django_rtcstream import (
    AdditionalOutputs,
    ReplyOnPause,
    ReplyOnStopWords,
    SpeechModelUnavailable,
    Stream,
    get_stt_model,
    get_tts_model,
)

logger = logging.getLogger(__name__)


def say_back(audio: tuple[int, np.ndarray]) -> Iterator[Any]:
    """Transcribe the utterance and say it back; echo the audio if a speech model is missing."""
    try:
        text = get_stt_model().stt(audio)
        tts = get_tts_model()
    except SpeechModelUnavailable as exc:
        logger.warning("say-back echoes the audio: %s", exc)
        yield audio
        return
    yield AdditionalOutputs(text)
    reply = f"You said: {text}." if text else "Sorry, I did not catch that."
    yield from tts.stream_tts_sync(reply)


say_back_stream = Stream(ReplyOnPause(say_back), modality="audio", mode="send-receive")
assistant = Stream(
    ReplyOnStopWords(say_back, stop_words=["assistant"]), modality="audio", mode="send-receive"
)
