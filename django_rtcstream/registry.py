"""Registered streams: ``RTCSTREAM["STREAMS"]`` resolved lazily by name."""

from __future__ import annotations

import re
import threading

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from django_rtcstream.conf import rtc_settings
from django_rtcstream.exceptions import StreamNotFound
from django_rtcstream.stream import Stream

STREAM_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,49}$")

_cache: dict[str, Stream] = {}
_lock = threading.Lock()


def reset() -> None:
    """Forget resolved streams (called when ``RTCSTREAM`` changes)."""
    with _lock:
        _cache.clear()


def stream_names() -> list[str]:
    return list(rtc_settings.STREAMS)


def resolve(name: str, path: object) -> Stream:
    """Import a dotted path (or take an object) and check it is a ``Stream``."""
    target = path
    if isinstance(path, str):
        try:
            target = import_string(path)
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"RTCSTREAM['STREAMS'][{name!r}] = {path!r} cannot be imported: {exc}"
            ) from exc
    if not isinstance(target, Stream) and callable(target):
        target = target()
    if not isinstance(target, Stream):
        raise ImproperlyConfigured(
            f"RTCSTREAM['STREAMS'][{name!r}] = {path!r} is a {type(target).__name__}, "
            "not a django_rtcstream.Stream (or a factory returning one)"
        )
    return target


def get_stream(name: str) -> Stream:
    """The stream registered as ``name``.

    Raises:
        StreamNotFound: no such name in ``RTCSTREAM["STREAMS"]``.
        ImproperlyConfigured: the entry cannot be imported or is not a Stream.
    """
    stream = _cache.get(name)
    if stream is not None:
        return stream
    streams = rtc_settings.STREAMS
    if name not in streams:
        raise StreamNotFound(f"No stream named {name!r} is registered in RTCSTREAM['STREAMS'].")
    with _lock:
        if name not in _cache:
            stream = resolve(name, streams[name])
            stream._bind(name)
            _cache[name] = stream
        return _cache[name]


def get_streams() -> dict[str, Stream]:
    """Every registered stream, by name, in settings order."""
    return {name: get_stream(name) for name in stream_names()}
