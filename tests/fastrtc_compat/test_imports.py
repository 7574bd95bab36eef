"""The programs are FastRTC programs: FastRTC's names only, through django_rtcstream."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

import django_rtcstream
import django_rtcstream.utils
from django_rtcstream import Stream
from tests.fastrtc_compat.conftest import PROGRAMS

# fastrtc/__init__.py __all__ at 27f0549 (0.0.33): reference/fastrtc.md section 1.1.
FASTRTC_ALL = frozenset(
    {
        "AsyncStreamHandler",
        "AudioVideoStreamHandler",
        "AudioEmitType",
        "AsyncAudioVideoStreamHandler",
        "AlgoOptions",
        "AdditionalOutputs",
        "aggregate_bytes_to_16bit",
        "async_aggregate_bytes_to_16bit",
        "audio_to_bytes",
        "audio_to_file",
        "audio_to_float32",
        "audio_to_int16",
        "get_hf_turn_credentials",
        "get_twilio_turn_credentials",
        "get_turn_credentials",
        "ReplyOnPause",
        "ReplyOnStopWords",
        "SileroVadOptions",
        "get_stt_model",
        "MoonshineSTT",
        "StreamHandler",
        "Stream",
        "VideoEmitType",
        "WebRTC",
        "WebRTCError",
        "Warning",
        "get_tts_model",
        "KokoroTTSOptions",
        "get_cloudflare_turn_credentials_async",
        "get_hf_turn_credentials_async",
        "get_turn_credentials_async",
        "get_cloudflare_turn_credentials",
        "wait_for_item",
        "UIArgs",
        "ModelOptions",
        "PauseDetectionModel",
        "get_silero_model",
        "VideoStreamHandler",
        "CloseStream",
        "get_current_context",
        "CartesiaTTSOptions",
        "WebRTCData",
    }
)
# Public names defined in fastrtc/utils.py at the same commit.
FASTRTC_UTILS = frozenset(
    {
        "AudioChunk",
        "WebRTCData",
        "WebRTCModel",
        "AdditionalOutputs",
        "CloseStream",
        "DataChannel",
        "create_message",
        "Context",
        "get_current_context",
        "Warning",
        "WebRTCError",
        "split_output",
        "player_worker_decode",
        "audio_to_bytes",
        "audio_to_file",
        "audio_to_float32",
        "audio_to_int16",
        "aggregate_bytes_to_16bit",
        "async_aggregate_bytes_to_16bit",
        "webrtc_error_handler",
        "wait_for_item",
    }
)
ALLOWED_THIRD_PARTY = {"numpy", "gradio"}
PROGRAM_DIR = Path(__file__).parent / "programs"


def imports_of(name):
    """(module, imported names) for every import statement of a program."""
    tree = ast.parse((PROGRAM_DIR / f"{name}.py").read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{name}: relative import"
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def test_there_are_enough_programs():
    assert len(PROGRAMS) >= 12, PROGRAMS


@pytest.mark.parametrize("name", PROGRAMS)
def test_program_imports_only_fastrtc_names_from_django_rtcstream(name):
    used = set()
    for module, names in imports_of(name):
        root = module.split(".")[0]
        if root == "django_rtcstream":
            assert module in ("django_rtcstream", "django_rtcstream.utils"), (
                f"{name} imports {module}: FastRTC programs know only fastrtc and fastrtc.utils"
            )
            assert names is not None, (
                f"{name}: 'import {module}' (use from-imports as FastRTC does)"
            )
            allowed = FASTRTC_ALL if module == "django_rtcstream" else FASTRTC_UTILS
            target = django_rtcstream if module == "django_rtcstream" else django_rtcstream.utils
            for imported in names:
                assert imported in allowed, f"{name}: {imported} is not exported by fastrtc"
                assert hasattr(target, imported), f"{name}: {module} lacks {imported}"
                used.add(imported)
        else:
            assert root in sys.stdlib_module_names or root in ALLOWED_THIRD_PARTY, (
                f"{name} imports {module}"
            )
    assert "Stream" in used, f"{name} does not build a Stream"


@pytest.mark.parametrize("name", PROGRAMS)
def test_program_defines_a_module_level_stream(name):
    module = importlib.import_module(f"tests.fastrtc_compat.programs.{name}")
    assert isinstance(module.stream, Stream)
