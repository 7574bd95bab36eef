"""The Stream constructor, input declarations, registration and checks (no media)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from django.core.checks import run_checks
from django.test import override_settings

from django_rtcstream import (
    AudioVideoStreamHandler,
    Checkbox,
    Dropdown,
    Number,
    Slider,
    Stream,
    StreamHandler,
    Textbox,
)
from django_rtcstream.exceptions import InvalidInput, StreamNotFound
from django_rtcstream.inputs import InputSchema
from django_rtcstream.registry import get_stream


class Echo(StreamHandler):
    def receive(self, frame): ...
    def emit(self): ...
    def copy(self):
        return Echo()


class AV(AudioVideoStreamHandler):
    def receive(self, frame): ...
    def emit(self): ...
    def video_receive(self, frame): ...
    def video_emit(self): ...
    def copy(self):
        return AV()


def video_fn(frame):
    return frame


def video_gen():
    yield np.zeros((4, 4, 3), np.uint8)


def audio_gen():
    yield 24000, np.zeros(480, np.float32)


VALID = [
    (video_fn, "video", "send-receive"),
    (video_fn, "video", "send"),
    (video_gen, "video", "receive"),
    (Echo(), "audio", "send-receive"),
    (Echo(), "audio", "send"),
    (audio_gen, "audio", "receive"),
    (Echo(), "audio", "receive"),
    (AV(), "audio-video", "send-receive"),
    (AV(), "audio-video", "send"),
    (AV(), "audio-video", "receive"),
]


@pytest.mark.parametrize(("handler", "modality", "mode"), VALID)
def test_every_modality_and_mode_is_accepted(handler, modality, mode):
    assert Stream(handler, modality=modality, mode=mode).mode == mode


INVALID = [
    (Echo(), "video", "send-receive", "a function fn(frame, *inputs)"),
    (video_fn, "audio", "send-receive", "a StreamHandler or AsyncStreamHandler instance"),
    (video_fn, "video", "receive", "a generator function"),
    (video_gen, "video", "send-receive", "a function fn(frame"),
    (Echo(), "audio-video", "send", "an AudioVideoStreamHandler"),
    (AV(), "audio", "send-receive", "a StreamHandler"),
    (video_fn, "audio", "receive", "a generator function fn(*inputs)"),
]


@pytest.mark.parametrize(("handler", "modality", "mode", "advice"), INVALID)
def test_invalid_combinations_say_what_to_pass_instead(handler, modality, mode, advice):
    with pytest.raises(ValueError) as error:
        Stream(handler, modality=modality, mode=mode)
    assert advice in str(error.value) and "Pass " in str(error.value)


def test_other_constructor_errors():
    with pytest.raises(ValueError, match="modality must be one of"):
        Stream(video_fn, modality="smell")
    with pytest.raises(ValueError, match="mode must be one of"):
        Stream(video_fn, mode="both")
    with pytest.raises(ValueError, match="concurrency_limit"):
        Stream(video_fn, concurrency_limit=0)
    with pytest.raises(ValueError, match="additional_outputs_handler"):
        Stream(video_fn, additional_outputs=[Number()])
    with pytest.raises(ValueError, match="audio_prefetch"):
        Stream(video_fn, audio_prefetch=16)
    with pytest.raises(ValueError, match="audio_adaptive"):
        Stream(video_fn, audio_adaptive="yes")
    with pytest.raises(ValueError, match="video_marker_release"):
        Stream(video_fn, video_marker_release=1.5)
    with pytest.raises(ValueError, match="multiple of 50"):
        Echo.__init__(Echo(), output_sample_rate=44101)
    assert Stream(video_fn, concurrency_limit="default").concurrency_limit == 1
    assert Stream(video_fn).concurrency_limit is None


def test_bound_methods_are_handlers_too():
    class Model:
        def predict(self, frame, threshold):
            return frame

    assert Stream(Model().predict, modality="video").handler is not None


def test_inputs_validate_and_coerce():
    schema = InputSchema(
        [
            Slider(minimum=0, maximum=1, value=0.3, label="Threshold"),
            Number(value=3, precision=0, minimum=1, label="Count"),
            Dropdown(choices=[("Fast", "fast"), ("Good", "good")], value="fast", label="Quality"),
            Checkbox(value=True, label="Mirror"),
            Textbox(value="hi", label="Caption"),
        ]
    )
    assert schema.defaults() == [0.3, 3, "fast", True, "hi"]
    assert schema.clean_args(["0.5", 2.0, "good", False, "x"]) == [0.5, 2, "good", False, "x"]
    with pytest.raises(InvalidInput) as error:
        schema.clean_args([1.5, 2.5, "slow", "maybe", 3])
    assert set(error.value.errors) == {"threshold", "count", "quality", "mirror", "caption"}
    assert schema.clean_named({"mirror": False}, schema.defaults())[3] is False
    with pytest.raises(InvalidInput):
        schema.clean_args([float("nan"), 2, "fast", True, ""])


def test_gradio_components_are_read_without_importing_gradio():
    # Same class name and attributes as gradio.Slider; gradio itself is not needed.
    class Slider:
        def __init__(self, minimum, maximum, step, value, label=None):
            self.minimum, self.maximum, self.step, self.value, self.label = (
                minimum,
                maximum,
                step,
                value,
                label,
            )
            self.elem_id = None

    stream = Stream(video_fn, additional_inputs=[Slider(0, 1, 0.01, 0.3)])
    assert stream.inputs.describe()[0]["kind"] == "slider"
    assert stream.clean_inputs(0.7) == [0.7]
    with pytest.raises(InvalidInput):
        stream.clean_inputs(2)
    # In a fresh process: other tests of the suite import gradio themselves.
    code = (
        "import sys\n"
        "from django_rtcstream import Stream\n"
        "class Slider:\n"
        "    minimum, maximum, step, value, label, elem_id = 0, 1, 0.01, 0.3, None, None\n"
        "Stream(lambda frame: frame, additional_inputs=[Slider()]).clean_inputs(0.7)\n"
        "print('gradio' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_import_is_light_and_never_pulls_gradio_or_aiortc():
    code = (
        "import sys, time; t=time.perf_counter(); import django_rtcstream; "
        "d=time.perf_counter()-t; "
        "assert not {'gradio','aiortc','numpy','django.conf'} & set(sys.modules), sorted(sys.modules); "
        "print(d)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) < 1.0  # a sanity bound; speed is measured in bench/


def test_registry_resolves_lazily_and_follows_override_settings():
    assert get_stream("flip").name == "flip"
    with (
        override_settings(RTCSTREAM={"STREAMS": {"other": "tests.streams.flip"}}),
        pytest.raises(StreamNotFound),
    ):
        get_stream("echo")
    assert get_stream("echo").modality == "audio"


@pytest.mark.parametrize(
    ("rtcstream", "code"),
    [
        ([], "django_rtcstream.E001"),
        ({"STREMS": {}}, "django_rtcstream.W001"),
        ({"STREAMS": {"x": "tests.streams.does_not_exist"}}, "django_rtcstream.E002"),
        ({"STREAMS": {"Bad Name": "tests.streams.flip"}}, "django_rtcstream.E004"),
        ({"STREAMS": {"x": "tests.streams.EVENTS"}}, "django_rtcstream.E002"),
        ({"CONNECT_TIMEOUT": -1}, "django_rtcstream.E009"),
        ({"AUDIO_PREFETCH": -1}, "django_rtcstream.E009"),
        ({"AUDIO_ADAPTIVE": "yes"}, "django_rtcstream.E009"),
        ({"VIDEO_MARKER_RELEASE": None}, "django_rtcstream.E009"),
        ({"TRIM_MEMORY": "yes"}, "django_rtcstream.E009"),
        ({"ICE_HOST_ADDRESSES": "127.0.0.1"}, "django_rtcstream.E010"),
        ({"UDP_PORT_RANGE": (10, 5)}, "django_rtcstream.E010"),
    ],
)
def test_system_checks_report_bad_configuration(rtcstream, code):
    with override_settings(RTCSTREAM=rtcstream):
        ids = [m.id for m in run_checks()]
    assert code in ids


def test_redis_layer_with_a_short_socket_timeout_is_warned_about():
    base = {"BACKEND": "channels_redis.core.RedisChannelLayer"}
    short = {"default": {**base, "CONFIG": {"hosts": ["redis://127.0.0.1:6379/0"]}}}
    fixed = {
        "default": {
            **base,
            "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:6379/0", "socket_timeout": None}]},
        }
    }
    with override_settings(CHANNEL_LAYERS=short):
        assert "django_rtcstream.W002" in [m.id for m in run_checks()]
    with override_settings(CHANNEL_LAYERS=fixed):
        assert "django_rtcstream.W002" not in [m.id for m in run_checks()]


def test_missing_channel_layer_is_a_check_error():
    with override_settings(CHANNEL_LAYERS={}):
        assert "django_rtcstream.E007" in [m.id for m in run_checks()]


def test_the_test_project_is_clean():
    assert [m for m in run_checks() if m.id and m.id.startswith("django_rtcstream")] == []


@pytest.mark.django_db
def test_no_missing_migrations():
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("makemigrations", "django_rtcstream", "--check", "--dry-run", stdout=out)
