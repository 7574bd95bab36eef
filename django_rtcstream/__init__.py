"""django-rtcstream: FastRTC's ``Stream`` model as a reusable Django app.

Importing this package is free: the public names below are loaded on first
attribute access, so ``import django_rtcstream`` pulls in neither Django
settings, nor aiortc, nor numpy, nor gradio. The audio helpers
(``django_rtcstream.utils``) and TURN credential helpers
(``django_rtcstream.credentials``) keep FastRTC's names, and so do the offline
speech helpers ``get_stt_model`` / ``get_tts_model`` (``django_rtcstream.speech``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Stream": "django_rtcstream.stream",
    "UIArgs": "django_rtcstream.stream",
    "AudioEmitType": "django_rtcstream.handlers",
    "VideoEmitType": "django_rtcstream.handlers",
    "StreamHandler": "django_rtcstream.handlers",
    "AsyncStreamHandler": "django_rtcstream.handlers",
    "AudioVideoStreamHandler": "django_rtcstream.handlers",
    "AsyncAudioVideoStreamHandler": "django_rtcstream.handlers",
    "StreamHandlerBase": "django_rtcstream.handlers",
    "VideoStreamHandler": "django_rtcstream.handlers",
    "AdditionalOutputs": "django_rtcstream.handlers",
    "CloseStream": "django_rtcstream.handlers",
    "Context": "django_rtcstream.handlers",
    "get_current_context": "django_rtcstream.handlers",
    "send_message": "django_rtcstream.handlers",
    "warn": "django_rtcstream.handlers",
    "Warning": "django_rtcstream.handlers",
    "WebRTCError": "django_rtcstream.handlers",
    "log": "django_rtcstream.handlers",
    "ReplyOnPause": "django_rtcstream.turn_taking.reply_on_pause",
    "ReplyFnGenerator": "django_rtcstream.turn_taking.reply_on_pause",
    "ReplyOnStopWords": "django_rtcstream.turn_taking.reply_on_stopwords",
    "AlgoOptions": "django_rtcstream.turn_taking.options",
    "SileroVadOptions": "django_rtcstream.turn_taking.options",
    "ModelOptions": "django_rtcstream.turn_taking.options",
    "PauseDetectionModel": "django_rtcstream.turn_taking.options",
    "VadUnavailable": "django_rtcstream.turn_taking.options",
    "get_silero_model": "django_rtcstream.turn_taking.silero",
    "Slider": "django_rtcstream.inputs",
    "Number": "django_rtcstream.inputs",
    "Dropdown": "django_rtcstream.inputs",
    "Checkbox": "django_rtcstream.inputs",
    "Textbox": "django_rtcstream.inputs",
    "wait_for_item": "django_rtcstream.utils",
    "audio_to_bytes": "django_rtcstream.utils",
    "audio_to_file": "django_rtcstream.utils",
    "audio_to_float32": "django_rtcstream.utils",
    "audio_to_int16": "django_rtcstream.utils",
    "aggregate_bytes_to_16bit": "django_rtcstream.utils",
    "async_aggregate_bytes_to_16bit": "django_rtcstream.utils",
    "get_cloudflare_turn_credentials": "django_rtcstream.credentials",
    "get_cloudflare_turn_credentials_async": "django_rtcstream.credentials",
    "get_hf_turn_credentials": "django_rtcstream.credentials",
    "get_hf_turn_credentials_async": "django_rtcstream.credentials",
    "get_twilio_turn_credentials": "django_rtcstream.credentials",
    "get_turn_credentials": "django_rtcstream.credentials",
    "get_turn_credentials_async": "django_rtcstream.credentials",
    "TurnCredentialsError": "django_rtcstream.credentials",
    "get_stt_model": "django_rtcstream.speech",
    "get_tts_model": "django_rtcstream.speech",
    "stt_for_chunks": "django_rtcstream.speech",
    "STTModel": "django_rtcstream.speech",
    "TTSModel": "django_rtcstream.speech",
    "PocketSphinxSTT": "django_rtcstream.speech",
    "EspeakTTS": "django_rtcstream.speech",
    "EspeakTTSOptions": "django_rtcstream.speech",
    "SpeechModelUnavailable": "django_rtcstream.speech",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # pragma: no cover
    # What type checkers and IDEs see; at run time __getattr__ below imports each name
    # on first use. "X as X" marks each one as re-exported.
    from django_rtcstream.credentials import (
        TurnCredentialsError as TurnCredentialsError,
        get_cloudflare_turn_credentials as get_cloudflare_turn_credentials,
        get_cloudflare_turn_credentials_async as get_cloudflare_turn_credentials_async,
        get_hf_turn_credentials as get_hf_turn_credentials,
        get_hf_turn_credentials_async as get_hf_turn_credentials_async,
        get_turn_credentials as get_turn_credentials,
        get_turn_credentials_async as get_turn_credentials_async,
        get_twilio_turn_credentials as get_twilio_turn_credentials,
    )
    from django_rtcstream.handlers import (
        AdditionalOutputs as AdditionalOutputs,
        AsyncAudioVideoStreamHandler as AsyncAudioVideoStreamHandler,
        AsyncStreamHandler as AsyncStreamHandler,
        AudioEmitType as AudioEmitType,
        AudioVideoStreamHandler as AudioVideoStreamHandler,
        CloseStream as CloseStream,
        Context as Context,
        StreamHandler as StreamHandler,
        StreamHandlerBase as StreamHandlerBase,
        VideoEmitType as VideoEmitType,
        VideoStreamHandler as VideoStreamHandler,
        Warning as Warning,
        WebRTCError as WebRTCError,
        get_current_context as get_current_context,
        log as log,
        send_message as send_message,
        warn as warn,
    )
    from django_rtcstream.inputs import (
        Checkbox as Checkbox,
        Dropdown as Dropdown,
        Number as Number,
        Slider as Slider,
        Textbox as Textbox,
    )
    from django_rtcstream.speech import (
        EspeakTTS as EspeakTTS,
        EspeakTTSOptions as EspeakTTSOptions,
        PocketSphinxSTT as PocketSphinxSTT,
        SpeechModelUnavailable as SpeechModelUnavailable,
        STTModel as STTModel,
        TTSModel as TTSModel,
        get_stt_model as get_stt_model,
        get_tts_model as get_tts_model,
        stt_for_chunks as stt_for_chunks,
    )
    from django_rtcstream.stream import (
        Stream as Stream,
        UIArgs as UIArgs,
    )
    from django_rtcstream.turn_taking.options import (
        AlgoOptions as AlgoOptions,
        ModelOptions as ModelOptions,
        PauseDetectionModel as PauseDetectionModel,
        SileroVadOptions as SileroVadOptions,
        VadUnavailable as VadUnavailable,
    )
    from django_rtcstream.turn_taking.reply_on_pause import (
        ReplyFnGenerator as ReplyFnGenerator,
        ReplyOnPause as ReplyOnPause,
    )
    from django_rtcstream.turn_taking.reply_on_stopwords import (
        ReplyOnStopWords as ReplyOnStopWords,
    )
    from django_rtcstream.turn_taking.silero import (
        get_silero_model as get_silero_model,
    )
    from django_rtcstream.utils import (
        aggregate_bytes_to_16bit as aggregate_bytes_to_16bit,
        async_aggregate_bytes_to_16bit as async_aggregate_bytes_to_16bit,
        audio_to_bytes as audio_to_bytes,
        audio_to_file as audio_to_file,
        audio_to_float32 as audio_to_float32,
        audio_to_int16 as audio_to_int16,
        wait_for_item as wait_for_item,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'django_rtcstream' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
