"""``rtc_settings``: one typed attribute per ``RTCSTREAM`` key, its default, and overrides."""

from __future__ import annotations

import os
import socket
import types
import typing
from collections.abc import Callable

import pytest
from django.test import override_settings
from rest_framework.permissions import BasePermission

from django_rtcstream.conf import DEFAULTS, RtcSettings, Setting, rtc_settings
from django_rtcstream.stream import Stream


def _matches(value: object, hint: object) -> bool:
    """Whether ``value`` has type ``hint`` (the few forms the settings use)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any:
        return True
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if origin is Callable:
        return callable(value)
    if origin is type:
        return isinstance(value, type) and issubclass(value, args[0])
    if origin is list:
        return isinstance(value, list) and all(_matches(v, args[0]) for v in value)
    if origin is tuple:
        return (
            isinstance(value, tuple)
            and len(value) == len(args)
            and all(_matches(v, a) for v, a in zip(value, args, strict=True))
        )
    if origin is dict:
        return isinstance(value, dict) and all(
            _matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items()
        )
    if hint is float:  # PEP 484: an int is acceptable where a float is
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    assert isinstance(hint, type), hint
    return isinstance(value, hint)


def _declared() -> dict[str, object]:
    """name -> the type of each setting's value, as declared on RtcSettings."""
    hints = typing.get_type_hints(
        RtcSettings, localns={"Stream": Stream, "BasePermission": BasePermission}
    )
    out = {}
    for name, hint in hints.items():
        if typing.get_origin(hint) is Setting:
            (out[name],) = typing.get_args(hint)
    return out


def test_every_key_is_declared_with_a_type_its_default_has():
    declared = _declared()
    assert list(declared) == list(DEFAULTS)
    wrong = {n: (DEFAULTS[n], t) for n, t in declared.items() if not _matches(DEFAULTS[n], t)}
    assert not wrong


def test_the_type_check_of_this_test_refuses_a_wrong_default():
    assert not _matches("30", float)
    assert not _matches(True, float)
    assert not _matches(["x", 1], list[str])
    assert not _matches("tcp", typing.Literal["ws", "wss"] | None)
    assert _matches(None, typing.Literal["ws", "wss"] | None)


@override_settings(RTCSTREAM={})
def test_each_setting_reads_its_default_when_the_project_does_not_set_it():
    for name, default in DEFAULTS.items():
        assert getattr(rtc_settings, name) == default, name


def test_each_setting_reads_the_projects_value_and_follows_override_settings():
    for name in DEFAULTS:
        marker = object()
        with override_settings(RTCSTREAM={name: marker}):
            assert getattr(rtc_settings, name) is marker, name
        assert getattr(rtc_settings, name) is not marker, name


def test_an_unknown_setting_is_an_attribute_error_that_names_it():
    with pytest.raises(AttributeError, match="Invalid RTCSTREAM setting: 'CONNECT_TIMOUT'"):
        rtc_settings.CONNECT_TIMOUT  # noqa: B018  (the access is the test)


def test_the_worker_name_is_host_and_pid_unless_the_setting_names_it():
    with override_settings(RTCSTREAM={}):
        assert rtc_settings.worker_name() == f"{socket.gethostname()}:{os.getpid()}"
    with override_settings(RTCSTREAM={"WORKER_NAME": "web-1"}):
        assert rtc_settings.worker_name() == "web-1"
