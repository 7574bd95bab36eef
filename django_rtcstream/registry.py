"""Registered streams: ``RTCSTREAM["STREAMS"]`` resolved lazily by name.

A stream that is not in the settings can still be served: :func:`register`
adds it at run time under a name of its own (what ``stream.ui`` does for a
FastRTC-style program that builds a ``Stream`` and launches its UI at once).
Such a stream lives in this process only; list it in the settings to serve it
from several workers.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from django_rtcstream.conf import rtc_settings
from django_rtcstream.exceptions import StreamNotFound
from django_rtcstream.stream import Stream

STREAM_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,49}$")

_cache: dict[str, Stream] = {}
_registered: dict[str, Stream] = {}  # added at run time by register()
_lock = threading.Lock()


def reset() -> None:
    """Forget resolved streams (called when ``RTCSTREAM`` changes)."""
    with _lock:
        _cache.clear()


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    """The registry owns its reset, as Channels' layers do: tests that override
    ``RTCSTREAM`` resolve their streams afresh."""
    if setting == "RTCSTREAM":
        reset()


def stream_names() -> list[str]:
    """Names of the streams from the settings, then those added by :func:`register`."""
    names = list(rtc_settings.STREAMS)
    return names + [name for name in _registered if name not in names]


def register(stream: Stream, name: str | None = None) -> str:
    """Serve a ``Stream`` that is not in ``RTCSTREAM["STREAMS"]``; returns its name.

    Without ``name`` the stream is named after its handler (``flip_frame`` ->
    ``flip-frame``), with a number added if that name is taken. Registering a
    stream that already has a name returns that name.

    Raises:
        ValueError: ``name`` is not a valid stream name or is taken.
    """
    if stream.name is not None and (stream.name in _registered or stream.name in _cache):
        return stream.name
    with _lock:
        taken = set(rtc_settings.STREAMS) | set(_registered)
        if name is None:
            base = _name_from_handler(stream.handler)
            name, n = base, 1
            while name in taken:
                n += 1
                name = f"{base[:45]}-{n}"
        elif not STREAM_NAME_RE.match(name):
            raise ValueError(f"{name!r} is not a stream name (lowercase letters, digits, - and _)")
        elif name in taken:
            raise ValueError(f"A stream named {name!r} is already registered")
        stream._bind(name)
        _registered[name] = stream
        return name


def _name_from_handler(handler: object) -> str:
    target = getattr(handler, "callable", handler)  # VideoStreamHandler
    raw = getattr(target, "__name__", None) or type(target).__name__
    slug = re.sub(r"[^a-z0-9_-]+", "-", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", raw).lower())
    slug = slug.strip("-_")[:50]
    return slug if STREAM_NAME_RE.match(slug) else "stream"


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
    stream = _cache.get(name) or _registered.get(name)
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
