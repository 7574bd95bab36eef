"""The ``Stream``: a handler plus the modality and mode it is served in.

A ``Stream`` holds configuration only (the handler, its declared inputs and
outputs, limits and RTC settings). It never holds sessions: those live in
the session runtime of whichever worker process answered the offer, and
``set_input`` / ``output_stream`` reach them through the channel layer, so
the same calls work from any worker.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from django_rtcstream.handlers import (
    AdditionalOutputs,
    AsyncAudioVideoStreamHandler,
    AudioVideoStreamHandler,
    StreamHandlerBase,
    VideoStreamHandler,
)
from django_rtcstream.inputs import InputSchema

# For annotations only (stream.py's own imports are above).
if TYPE_CHECKING:  # pragma: no cover
    import asyncio

    from rest_framework.permissions import BasePermission
    from rest_framework.serializers import Serializer

    from django_rtcstream.contrib.gradio.ui import StreamBlocks
    from django_rtcstream.handlers import Handler


class UIArgs(TypedDict, total=False):
    """FastRTC's options of the Gradio UI (``Stream(ui_args=...)``).

    ``title``, ``subtitle`` and ``hide_title`` shape this app's UI; the others
    style FastRTC's own Gradio component and are accepted and ignored here.
    """

    title: str
    subtitle: str
    icon: str
    icon_button_color: str
    pulse_color: str
    icon_radius: int
    send_input_on: Literal["submit", "change"]
    hide_title: bool
    full_screen: bool


Modality = Literal["video", "audio", "audio-video"]
Mode = Literal["send-receive", "send", "receive"]

MODALITIES = ("video", "audio", "audio-video")
MODES = ("send-receive", "send", "receive")

_HANDLER_HELP = {
    ("video", "send-receive"): "a function fn(frame, *inputs) returning a frame",
    ("video", "send"): "a function fn(frame, *inputs) (its frames are discarded; "
    "return AdditionalOutputs to report results)",
    ("video", "receive"): "a generator function fn(*inputs) yielding frames",
    ("audio", "send-receive"): "a StreamHandler or AsyncStreamHandler instance",
    ("audio", "send"): "a StreamHandler or AsyncStreamHandler instance",
    ("audio", "receive"): "a generator function fn(*inputs) yielding (sample_rate, array) "
    "chunks, or a StreamHandler whose emit() produces audio",
}
for _mode in MODES:
    _HANDLER_HELP[("audio-video", _mode)] = (
        "an AudioVideoStreamHandler or AsyncAudioVideoStreamHandler instance"
    )


def _is_generator_function(fn: object) -> bool:
    target = fn.callable if isinstance(fn, VideoStreamHandler) else fn
    return inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target)


def _check_handler(handler: object, modality: str, mode: str) -> None:
    """Refuse a handler that cannot serve this modality and mode, saying what would."""
    want = _HANDLER_HELP[(modality, mode)]
    is_class = isinstance(handler, StreamHandlerBase)
    is_av = isinstance(handler, (AudioVideoStreamHandler, AsyncAudioVideoStreamHandler))
    ok: bool
    if modality == "audio-video":
        ok = is_av
    elif modality == "audio":
        if mode == "receive":
            ok = (is_class and not is_av) or (not is_class and _is_generator_function(handler))
        else:
            ok = is_class and not is_av
    else:  # video
        if is_class:
            ok = False
        elif mode == "receive":
            ok = _is_generator_function(handler)
        else:
            ok = callable(handler) or isinstance(handler, VideoStreamHandler)
            ok = ok and not _is_generator_function(handler)
    if not ok:
        got = type(handler).__name__
        if inspect.isfunction(handler):
            got = "generator function" if _is_generator_function(handler) else "function"
        raise ValueError(
            f"A {modality!r} stream in {mode!r} mode needs {want}; got {got}. "
            f"Pass {want} as handler=, or change modality=/mode=."
        )


class Stream:
    """A handler served as a real-time endpoint.

    Args:
        handler: see the table in the README; validated against ``modality``
            and ``mode`` here, with a message that says what to pass instead.
        modality: ``"video"``, ``"audio"`` or ``"audio-video"``.
        mode: ``"send-receive"``, ``"send"`` or ``"receive"``.
        additional_inputs: Gradio components (or ``django_rtcstream.Slider`` and
            friends) whose values are passed to the handler after the media.
        additional_outputs: Gradio components shown by the Gradio UI.
        additional_outputs_handler: ``fn(*current, *outputs.args)`` for the Gradio UI.
        concurrency_limit: most sessions at once over all workers; None means
            unlimited (FastRTC's ``"default"`` means 1).
        time_limit: seconds a session may stay connected.
        rtc_configuration: ICE configuration for clients: a dict, or a sync or
            async callable returning one.
        server_rtc_configuration: ICE configuration of the server's peer
            connections (``{"iceServers": [...]}``, optionally with
            ``"iceTransportPolicy": "relay"``). ``SERVER_ICE_SERVERS`` unless given.
        track_constraints: ``getUserMedia`` constraints for browser clients.
        allow_extra_tracks: ignore offered tracks of another kind instead of
            refusing the offer.
        video_format: pixel format of arrays given to video handlers (FastRTC
            delivers ``"bgr24"``).
        output_serializer: ``fn(AdditionalOutputs) -> JSON-able`` for the SSE hook.
        audio_prefetch: frames the server's audio jitter buffer holds (None:
            the ``AUDIO_PREFETCH`` setting).
        audio_adaptive: let that hold follow the reordering seen on the link
            (None: the ``AUDIO_ADAPTIVE`` setting).
        video_marker_release: release each received video frame on its last
            packet instead of the next frame's first (None: the
            ``VIDEO_MARKER_RELEASE`` setting).
        permission_classes: DRF permission classes per action (``"open"``,
            ``"input"``, ``"outputs"``, ``"close"``), overriding the settings.
        input_serializer: a DRF serializer class for the input hook, instead of
            the one derived from ``additional_inputs``; its validated data, in
            field order, become the handler's extra arguments.
        reconnect_on_drain: when the session's worker drains (SIGTERM,
            ``rtcstream_drain``), its ``draining`` message tells clients to
            connect again elsewhere (True) or to stay until the session ends or
            ``DRAIN_TIMEOUT`` runs out (False: a handler whose state a new
            session would lose, such as a conversation).
    """

    def __init__(
        self,
        handler: Handler,
        *,
        modality: Modality = "video",
        mode: Mode = "send-receive",
        additional_inputs: list[Any] | None = None,
        additional_outputs: list[Any] | None = None,
        additional_outputs_handler: Callable[..., Any] | None = None,
        concurrency_limit: int | Literal["default"] | None = None,
        time_limit: float | None = None,
        rtc_configuration: dict[str, Any] | Callable[[], Any] | None = None,
        server_rtc_configuration: dict[str, Any] | None = None,
        track_constraints: dict[str, Any] | None = None,
        allow_extra_tracks: bool = False,
        video_format: Literal["bgr24", "rgb24"] = "bgr24",
        output_serializer: Callable[[AdditionalOutputs], Any] | None = None,
        ui_args: UIArgs | dict[str, Any] | None = None,
        audio_prefetch: int | None = None,
        audio_adaptive: bool | None = None,
        video_marker_release: bool | None = None,
        permission_classes: dict[str, list[str | type[BasePermission]]] | None = None,
        input_serializer: type[Serializer[Any]] | None = None,
        reconnect_on_drain: bool = True,
    ) -> None:
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        _check_handler(handler, modality, mode)
        if concurrency_limit == "default":
            concurrency_limit = 1
        if concurrency_limit is not None and (
            not isinstance(concurrency_limit, int) or concurrency_limit < 1
        ):
            raise ValueError("concurrency_limit must be a positive int or None (unlimited)")
        if time_limit is not None and time_limit <= 0:
            raise ValueError("time_limit must be a positive number of seconds or None")
        if additional_outputs and additional_outputs_handler is None:
            raise ValueError(
                "additional_outputs_handler must be given with additional_outputs "
                "(it maps AdditionalOutputs onto the Gradio output components)"
            )
        if audio_prefetch is not None and (
            isinstance(audio_prefetch, bool)
            or not isinstance(audio_prefetch, int)
            or not 0 <= audio_prefetch <= 15
        ):
            raise ValueError("audio_prefetch must be an int in 0-15 or None (the setting)")
        if audio_adaptive not in (None, True, False):
            raise ValueError("audio_adaptive must be True, False or None (the setting)")
        if video_marker_release not in (None, True, False):
            raise ValueError("video_marker_release must be True, False or None (the setting)")
        if video_format not in ("bgr24", "rgb24"):
            raise ValueError("video_format must be 'bgr24' or 'rgb24'")
        if server_rtc_configuration is not None and not isinstance(server_rtc_configuration, dict):
            raise ValueError("server_rtc_configuration must be a dict like {'iceServers': [...]}")
        server_policy = (server_rtc_configuration or {}).get("iceTransportPolicy", "all")
        if server_policy not in ("all", "relay"):
            raise ValueError("server_rtc_configuration's iceTransportPolicy: 'all' or 'relay'")
        self.handler: Handler = handler
        self.event_handler: Handler = handler  # FastRTC's name
        self.modality: Modality = modality
        self.mode: Mode = mode
        self.additional_inputs = list(additional_inputs or [])
        self.additional_outputs = list(additional_outputs or [])
        self.additional_outputs_handler = additional_outputs_handler
        self.concurrency_limit: int | None = concurrency_limit
        self.time_limit = time_limit
        self.rtc_configuration = rtc_configuration
        self.server_rtc_configuration = server_rtc_configuration
        self.track_constraints = track_constraints
        self.allow_extra_tracks = allow_extra_tracks
        self.video_format = video_format
        self.output_serializer = output_serializer
        self.ui_args = dict(ui_args or {})
        self.audio_prefetch = audio_prefetch
        self.audio_adaptive = audio_adaptive
        self.video_marker_release = video_marker_release
        if permission_classes is not None and (
            not isinstance(permission_classes, dict)
            or set(permission_classes) - {"open", "input", "outputs", "close"}
        ):
            raise ValueError(
                "permission_classes maps 'open', 'input', 'outputs' or 'close' to lists of "
                "DRF permission classes"
            )
        self.permission_classes = permission_classes
        self.input_serializer = input_serializer
        self.reconnect_on_drain = bool(reconnect_on_drain)
        self.inputs = InputSchema(self.additional_inputs)
        self.name: str | None = None
        self._ui: StreamBlocks | None = None

    def __repr__(self) -> str:
        return f"<Stream {self.name or '?'} {self.modality} {self.mode}>"

    # -- shape ------------------------------------------------------------------

    @property
    def sends_media_to_client(self) -> bool:
        return self.mode in ("send-receive", "receive")

    @property
    def receives_media_from_client(self) -> bool:
        return self.mode in ("send-receive", "send")

    @property
    def kinds(self) -> tuple[str, ...]:
        """The media kinds (``"audio"``, ``"video"``) this stream carries."""
        return ("audio", "video") if self.modality == "audio-video" else (self.modality,)

    @property
    def fps(self) -> int:
        if isinstance(self.handler, VideoStreamHandler):
            return self.handler.fps
        return int(getattr(self.handler, "fps", 30))

    def _bind(self, name: str) -> None:
        """Called by the registry: a stream is known by its settings key."""
        if self.name is not None and self.name != name:
            raise ValueError(
                f"This Stream is registered twice, as {self.name!r} and {name!r}; "
                "create one Stream object per name"
            )
        self.name = name

    def _require_name(self) -> str:
        if self.name is None:
            raise RuntimeError(
                "This Stream is not registered: list it in settings.RTCSTREAM['STREAMS'] "
                "(or call django_rtcstream.registry.get_stream(name) once)"
            )
        return self.name

    def clean_inputs(self, *args: Any) -> list[Any]:
        """Validate positional input values against ``additional_inputs``.

        Raises:
            InvalidInput: with per-input messages.
        """
        return self.inputs.clean_args(args)

    # -- the FastRTC session API, working from any worker -------------------------

    async def aset_input(self, webrtc_id: str, *args: Any) -> None:
        """Set a session's inputs; the handler sees them on its next call.

        Raises:
            InvalidInput: the values do not match ``additional_inputs``.
            UnknownSession: no live session has this id.
        """
        from django_rtcstream.sessions import bus

        values = self.clean_inputs(*args)
        await bus.send_inputs(self._require_name(), webrtc_id, values)

    def set_input(self, webrtc_id: str, *args: Any) -> asyncio.Task[None] | None:
        """Set a session's inputs from sync or async code (FastRTC's call).

        Values are validated at once (``InvalidInput``). A session of this
        process gets them at once, and an unknown ``webrtc_id`` raises
        ``UnknownSession`` at once, from sync and async code alike. Only a
        session that may live on another worker (a channel layer shared by
        several processes) is reached asynchronously from inside an event loop:
        the call then returns the delivery task (await it, or use
        :meth:`aset_input`, to see its errors; unawaited, a failure is logged).
        """
        values = self.clean_inputs(*args)
        from django_rtcstream.sessions import bus

        return bus.deliver_inputs(self, self._require_name(), webrtc_id, values)

    async def output_stream(self, webrtc_id: str) -> AsyncGenerator[AdditionalOutputs, None]:
        """Yield the session's ``AdditionalOutputs`` as they happen, until it ends.

        Works on any worker. Raises ``UnknownSession`` for an id that never existed.
        """
        from django_rtcstream.sessions import outputs

        async for output in outputs.subscribe_outputs(self._require_name(), webrtc_id):
            yield output

    async def fetch_latest_output(self, webrtc_id: str, timeout: float = 10.0) -> AdditionalOutputs:
        """The session's most recent ``AdditionalOutputs``, waiting up to ``timeout``
        seconds for one if there is none yet.

        Raises:
            TimeoutError: no output within ``timeout``.
        """
        from django_rtcstream.sessions import outputs

        return await outputs.latest_output(self._require_name(), webrtc_id, timeout)

    async def close_session(self, webrtc_id: str, reason: str = "closed_by_server") -> None:
        """Close a session on whatever worker holds it."""
        from django_rtcstream.sessions import bus

        await bus.send_close(self._require_name(), webrtc_id, reason)

    # -- metadata -----------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """JSON-ready metadata: what a client needs to know to connect."""
        return {
            "name": self.name,
            "modality": self.modality,
            "mode": self.mode,
            "inputs": self.inputs.describe(),
            "outputs": [
                {"kind": type(o).__name__.lower(), "label": getattr(o, "label", None)}
                for o in self.additional_outputs
            ],
            "concurrency_limit": self.concurrency_limit,
            "time_limit": self.time_limit,
            "track_constraints": self.track_constraints,
        }

    def serialize_output(self, output: AdditionalOutputs) -> Any:
        """Turn outputs into JSON-able data for the SSE hook and clients."""
        if self.output_serializer is not None:
            return self.output_serializer(output)
        return [_jsonable(a) for a in output.args]

    # -- FastRTC's FastAPI entry points, which have no place here -----------------------

    def mount(self, app: Any, path: str = "") -> None:
        """FastRTC mounts its routes on a FastAPI app; a Django project serves them itself.

        Raises:
            ImproperlyConfigured: always, saying what to do instead.
        """
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            "Stream.mount(app) is FastRTC's FastAPI mount; in Django the app serves the routes: "
            "list the stream in settings.RTCSTREAM['STREAMS'] (name -> dotted path of this "
            "Stream), add path('rtc/', include('django_rtcstream.urls')) to urls.py, and build "
            "asgi.py's application with django_rtcstream.asgi.rtcstream_application(django_app, "
            "prefix='rtc/'). See the README, 'Coming from FastRTC'."
        )

    def fastphone(self, *args: Any, **kwargs: Any) -> None:
        """FastRTC's free temporary phone number comes from its hosted service: not here.

        Raises:
            ImproperlyConfigured: always, saying how to take calls instead.
        """
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            "Stream.fastphone() relies on FastRTC's hosted phone service. Point a Twilio number's "
            "voice webhook at POST <prefix>/<stream>/telephone/incoming instead (README, "
            "'Telephone')."
        )

    # -- the optional Gradio UI ----------------------------------------------------

    @property
    def ui(self) -> StreamBlocks:
        """A Gradio ``Blocks`` for this stream (needs the ``gradio`` extra).

        A stream that is not in ``RTCSTREAM["STREAMS"]`` is registered on first
        use (``registry.register``), so its routes are served beside the UI.
        """
        if self._ui is None:
            from django_rtcstream import registry
            from django_rtcstream.contrib.gradio.ui import build_ui

            if self.name is None:
                registry.register(self)
            self._ui = build_ui(self)
        return self._ui

    @ui.setter
    def ui(self, blocks: StreamBlocks) -> None:
        self._ui = blocks


def _jsonable(value: Any) -> Any:
    """Best-effort conversion of common handler results (numpy, tuples) to JSON."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    return str(value)
