"""``stream.ui``: a Gradio ``Blocks`` for a stream, streaming over the app's WebRTC.

FastRTC's UI streams through its own Gradio component. Here the media part of
the page is a ``gr.HTML`` block that loads the app's browser client
(``rtcstream.js``, from the Django static URL) and connects with it exactly as
the built-in page does: WebSocket signaling (HTTP offer as fallback), the
session token, trickle ICE. Gradio carries only what it is good at:

* **inputs**: each input component's ``change`` runs a line of JavaScript in
  the browser that calls the client's ``setInput``, i.e. the app's input hook
  with the session's token. No Gradio round trip, and no way for one browser to
  set another session's inputs.
* **outputs**: once connected, the page fires a Gradio event carrying the
  session id and token; its Python handler checks them like the SSE output
  hook does, then follows ``stream.output_stream(webrtc_id)`` (the bus the SSE
  hook reads) and maps every ``AdditionalOutputs`` through
  ``additional_outputs_handler(*current, *outputs.args)`` onto the output
  components. Outputs stay real Python objects (arrays, images) instead of
  their JSON form, and ``current`` is always the latest value, not the value
  when the event started.

Because the media and the hooks are the app's, the UI needs the Django
application beside it: ``mount_gradio_ui`` (``asgi.py``) serves both, and
:meth:`StreamBlocks.launch` does the same standalone.
"""

from __future__ import annotations

import asyncio
import html
import inspect
import json
from typing import Any

import gradio as gr

from django_rtcstream.contrib.gradio.compat import repair_abc
from django_rtcstream.inputs import InputSpec

MEDIA_CSS = """
.rtcstream-ui { display: flex; flex-direction: column; gap: 10px; }
.rtcstream-ui .rtc-videos { display: grid; gap: 10px; grid-template-columns: repeat(auto-fit, minmax(220px, 1fr)); }
.rtcstream-ui figure { position: relative; margin: 0; background: #0b0d12; border-radius: 10px; overflow: hidden; aspect-ratio: 4 / 3; }
.rtcstream-ui video { width: 100%; height: 100%; object-fit: contain; display: block; }
.rtcstream-ui figcaption { position: absolute; left: 8px; bottom: 8px; padding: 1px 8px; border-radius: 999px; background: rgba(0,0,0,.55); color: #fff; font-size: 12px; }
.rtcstream-ui .rtc-meter { display: grid; grid-template-columns: 8em 1fr; gap: 10px; align-items: center; font-size: 14px; }
.rtcstream-ui .rtc-meter-bar { height: 10px; border-radius: 999px; background: rgba(127,127,127,.25); overflow: hidden; }
.rtcstream-ui .rtc-meter-fill { height: 100%; width: 0; background: #22c55e; }
.rtcstream-ui .rtc-bar { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }
.rtcstream-ui button.rtc-start { border: 0; border-radius: 8px; padding: 8px 24px; min-height: 40px; font-weight: 600; cursor: pointer; background: #2563eb; color: #fff; }
.rtcstream-ui button.rtc-start.rtc-stop { background: #c2410c; }
.rtcstream-ui button.rtc-start:disabled { opacity: .6; cursor: default; }
.rtcstream-ui .rtc-error { padding: 8px 12px; border-radius: 8px; border: 1px solid #b91c1c; color: #b91c1c; background: #fef2f2; }
"""

# Runs in the browser when the block renders (gr.HTML's js_on_load): `element`
# is the block, `props` its properties, `trigger` fires a Gradio event.
MEDIA_JS = """
const root = element.querySelector(".rtcstream-ui");
const button = root.querySelector(".rtc-start");
const stateText = root.querySelector(".rtc-state");
const errorBox = root.querySelector(".rtc-error");
const WORDS = { idle: "Not connected", connecting: "Connecting…", connected: "Connected",
  closing: "Stopping…", closed: "Stopped", failed: "Not connected" };
const controller = { client: null, inputs: {}, meters: [],
  setInput(values) {
    Object.assign(this.inputs, values);
    if (this.client) this.client.setInput(values).catch((error) => showError(error));
  } };
window.__rtcstreamUI = window.__rtcstreamUI || {};
window.__rtcstreamUI[props.rtc_key] = controller;
function showError(error) {
  errorBox.hidden = !error;
  errorBox.textContent = error ? error.message : "";
  errorBox.dataset.code = error ? error.code : "";
}
function setState(state) {
  root.dataset.state = state;
  stateText.textContent = WORDS[state] || state;
  const busy = state === "connecting" || state === "connected" || state === "closing";
  button.textContent = busy ? "Stop" : "Start";
  button.classList.toggle("rtc-stop", busy);
  button.disabled = state === "closing";
}
function stopMeters() { for (const stop of controller.meters.splice(0)) stop(); }
import(props.module_url).then(({ RTCStreamClient, audioLevel }) => {
  let audioContext = null;
  function meter(selector, stream) {
    const box = root.querySelector(selector);
    if (!box || !stream || !stream.getAudioTracks().length) return;
    const level = audioLevel(stream, { context: audioContext });
    const fill = box.querySelector(".rtc-meter-fill");
    const timer = setInterval(() => {
      const value = level.level();
      box.dataset.level = value.toFixed(4);
      fill.style.width = `${Math.min(100, Math.max(0, (20 * Math.log10(Math.max(value, 1e-6)) + 60) / 0.6))}%`;
    }, 60);
    controller.meters.push(() => { clearInterval(timer); level.close(); box.dataset.level = "0"; fill.style.width = "0"; });
  }
  button.disabled = false;
  button.addEventListener("click", async () => {
    const current = controller.client;
    if (current && (current.state === "connecting" || current.state === "connected")) {
      await current.close();
      return;
    }
    showError(null);
    if (props.has_audio && !audioContext) audioContext = new AudioContext();
    const client = new RTCStreamClient(props.config_url, {
      localVideo: root.querySelector("video.rtc-local"),
      remoteVideo: root.querySelector("video.rtc-remote"),
      remoteAudio: root.querySelector("audio.rtc-remote"),
      inputs: { ...controller.inputs },
    });
    controller.client = client;
    client.on("state", (state) => {
      if (controller.client === client) setState(state);
      if (state === "closed" || state === "failed") stopMeters();
    });
    client.on("error", (error) => { if (controller.client === client) showError(error); });
    client.on("track", () => {
      stopMeters();
      meter(".rtc-meter-local", client.localStream);
      meter(".rtc-meter-remote", client.remoteStream);
    });
    try {
      await client.start();
    } catch (error) {
      return; // shown through the "error" event
    }
    if (client.state !== "connected") return;
    if (!client.remoteStream.getTracks().length) meter(".rtc-meter-local", client.localStream);
    if (props.has_outputs) trigger("submit", { webrtc_id: client.webrtcId, token: client.token });
  });
}).catch((error) => {
  showError({ code: "client_missing", message: `The stream's browser client could not be loaded from ${props.module_url}: serve the app's static files (see the README), then reload.` });
});
setState("idle");
button.disabled = true;
"""


class StreamBlocks(gr.Blocks):
    """A ``gr.Blocks`` that remembers its stream, so ``launch()`` can serve the
    Django application (signaling, hooks, static files) beside it."""

    rtc_stream: Any = None

    def launch(  # type: ignore[override]
        self,
        server_name: str = "127.0.0.1",
        server_port: int = 7860,
        *,
        prevent_thread_lock: bool = False,
        quiet: bool = False,
        **gradio_kwargs: Any,
    ) -> Any:
        """Serve this UI at ``/`` with the project's Django application beside it.

        Gradio's own ``launch()`` would start a server that knows nothing of the
        app's signaling, so this one runs uvicorn on an ASGI application that
        sends the app's prefix (``/rtc/``, ``/ws/rtc/``) and ``STATIC_URL`` to
        Django and everything else to Gradio. Django must be set up (run it from
        ``manage.py shell``, or after ``django.setup()``). Keyword arguments go
        to ``gradio.mount_gradio_app`` (``theme``, ``css``, ``auth``...).

        With ``prevent_thread_lock=True`` the server runs in a thread and the
        ``uvicorn.Server`` is returned (set ``should_exit`` to stop it).
        """
        import threading

        import uvicorn

        from django_rtcstream.contrib.gradio.asgi import standalone_application

        application = standalone_application(self, **gradio_kwargs)
        config = uvicorn.Config(
            application, host=server_name, port=server_port, lifespan="on", log_level="warning"
        )
        server = uvicorn.Server(config)
        if not quiet:
            print(f"* Running {self.rtc_stream.name!r} on http://{server_name}:{server_port}/")
        if prevent_thread_lock:
            thread = threading.Thread(target=server.run, name="rtcstream-gradio", daemon=True)
            thread.start()
            return server
        server.run()
        return server


def _component_for(spec: InputSpec) -> Any:
    """A Gradio component for one of the app's own input declarations."""
    label = spec.label or spec.name
    if spec.kind == "slider":
        return gr.Slider(
            minimum=spec.minimum if spec.minimum is not None else 0,
            maximum=spec.maximum if spec.maximum is not None else 100,
            step=spec.step,
            value=spec.default(),
            label=label,
        )
    if spec.kind == "number":
        return gr.Number(
            value=spec.default(),
            minimum=spec.minimum,
            maximum=spec.maximum,
            precision=spec.precision,
            label=label,
        )
    if spec.kind == "dropdown":
        return gr.Dropdown(
            choices=spec.choices, value=spec.default(), multiselect=spec.multiselect, label=label
        )
    if spec.kind == "checkbox":
        return gr.Checkbox(value=bool(spec.default()), label=label)
    if spec.kind == "textbox":
        return gr.Textbox(value=spec.default(), label=label)
    return None


def _render(component: Any) -> Any:
    """Place a declared Gradio component in the Blocks being built."""
    if getattr(component, "is_rendered", False):
        return component
    return component.render()


def _media_html(stream: Any) -> str:
    """The media block: elements for this stream's modality and mode."""
    sends = stream.receives_media_from_client
    receives = stream.sends_media_to_client
    parts = ['<div class="rtcstream-ui" data-state="idle">']
    if "video" in stream.kinds:
        parts.append('<div class="rtc-videos">')
        if sends:
            parts.append(
                '<figure><video class="rtc-local" autoplay playsinline muted></video>'
                "<figcaption>Your camera</figcaption></figure>"
            )
        if receives:
            parts.append(
                '<figure><video class="rtc-remote" autoplay playsinline></video>'
                "<figcaption>From the server</figcaption></figure>"
            )
        parts.append("</div>")
    if "audio" in stream.kinds:
        if sends:
            parts.append(
                '<div class="rtc-meter rtc-meter-local" data-level="0"><span>Your microphone</span>'
                '<div class="rtc-meter-bar"><div class="rtc-meter-fill"></div></div></div>'
            )
        if receives:
            parts.append(
                '<div class="rtc-meter rtc-meter-remote" data-level="0"><span>From the server</span>'
                '<div class="rtc-meter-bar"><div class="rtc-meter-fill"></div></div></div>'
            )
            if "video" not in stream.kinds:
                parts.append('<audio class="rtc-remote" autoplay></audio>')
    parts.append(
        '<div class="rtc-bar"><button type="button" class="rtc-start">Start</button>'
        '<span class="rtc-state" role="status">Not connected</span></div>'
        '<div class="rtc-error" role="alert" hidden></div></div>'
    )
    return "".join(parts)


async def _session_record(stream: Any, webrtc_id: Any, token: Any) -> Any:
    """The session's record, if this browser holds its token (the SSE hook's rule)."""
    from django_rtcstream.access import Requester
    from django_rtcstream.api import permissions
    from django_rtcstream.exceptions import SignalingError, UnknownSession
    from django_rtcstream.sessions import bus, records

    try:
        webrtc_id = bus.check_webrtc_id(webrtc_id)
        record = await records.find_or_refuse(stream.name, webrtc_id, live=False)
        await permissions.acheck("outputs", Requester.from_token(token), stream, record)
    except UnknownSession:
        raise gr.Error("This session has ended. Press Start to begin a new one.") from None
    except SignalingError as exc:
        raise gr.Error(f"The outputs of this session are not yours to read ({exc}).") from None
    return record


def build_ui(
    stream: Any,
    *,
    config_url: str | None = None,
    module_url: str | None = None,
    namespace: str = "rtcstream",
) -> StreamBlocks:
    """Build the Gradio UI of a registered stream.

    Args:
        stream: a registered ``Stream`` (it needs its name for the URLs).
        config_url: the stream's config URL; by default reversed from the
            app's URLconf (``<namespace>:config``).
        module_url: where the browser loads ``rtcstream.js`` from; by default
            its Django static URL.
    """
    from django.templatetags.static import static
    from django.urls import reverse

    repair_abc()
    name = stream._require_name()
    config_url = config_url or reverse(f"{namespace}:config", kwargs={"stream": name})
    module_url = module_url or static("django_rtcstream/rtcstream.js")
    ui_args = stream.ui_args
    title = ui_args.get("title") or name
    key = f"{name}"
    output_components = list(stream.additional_outputs)

    blocks = StreamBlocks(title=str(title))
    with blocks:
        blocks.rtc_stream = stream
        if not ui_args.get("hide_title"):
            gr.HTML(
                f"<h1 style='margin:0'>{html.escape(str(title))}</h1>"
                if "<" not in str(title)
                else str(title),
                js_on_load=None,
            )
        if ui_args.get("subtitle"):
            gr.Markdown(str(ui_args["subtitle"]))
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                media = gr.HTML(
                    _media_html(stream),
                    css_template=MEDIA_CSS,
                    js_on_load=MEDIA_JS,
                    elem_id=f"rtcstream-{name}",
                    rtc_key=key,
                    config_url=config_url,
                    module_url=module_url,
                    has_audio="audio" in stream.kinds,
                    has_outputs=bool(output_components),
                )
            inputs: list[tuple[str, Any]] = []
            if stream.inputs.specs or output_components:
                with gr.Column(scale=2):
                    for declaration, spec in zip(
                        stream.additional_inputs, stream.inputs.specs, strict=True
                    ):
                        if isinstance(declaration, InputSpec):
                            component = _component_for(declaration)
                            if component is None:
                                gr.Markdown(
                                    f"*{spec.label or spec.name}*: set it through the input hook."
                                )
                                continue
                        else:
                            component = _render(declaration)
                        inputs.append((spec.name, component))
                    rendered = {id(c) for _, c in inputs}
                    for component in output_components:
                        if id(component) not in rendered:  # FastRTC: shared components render once
                            _render(component)

        for input_name, component in inputs:
            # In the browser: hand the value to the client, which posts it to the input hook.
            component.change(
                fn=None,
                inputs=[component],
                outputs=None,
                queue=False,
                js=f"(value) => {{ const ui = (window.__rtcstreamUI || {{}})[{json.dumps(key)}]; "
                f"if (ui) ui.setInput({{ {json.dumps(input_name)}: value }}); return []; }}",
            )

        if output_components:
            handler = stream.additional_outputs_handler
            single = len(output_components) == 1

            async def follow_outputs(evt: gr.EventData, *current: Any) -> Any:
                data = getattr(evt, "_data", None) or {}
                record = await _session_record(stream, data.get("webrtc_id"), data.get("token"))
                values = list(current)
                async for output in stream.output_stream(record.webrtc_id):
                    if inspect.iscoroutinefunction(handler):
                        result = await handler(*values, *output.args)
                    else:  # user code: keep it off the event loop
                        result = await asyncio.to_thread(handler, *values, *output.args)
                    values = [result] if single else list(result)
                    yield values[0] if single else values

            media.submit(
                follow_outputs,
                inputs=output_components,
                outputs=output_components,
                concurrency_limit=None,
                show_progress="hidden",
                queue=True,
            )
    return blocks
