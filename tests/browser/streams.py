"""A stream declared with real Gradio components, for the Gradio UI test.

Registered only in the UI server process (``settings_standalone.py``), so gradio stays
out of every other test.
"""

from __future__ import annotations

from collections import defaultdict

import gradio as gr
import numpy as np

from django_rtcstream import AdditionalOutputs, Stream, get_current_context

SEEN: dict[str, int] = defaultdict(int)


def scale_and_count(frame, level):
    """Scale the frame by Level; every 10th frame, report (frames seen, mean of the frame)."""
    webrtc_id = get_current_context().webrtc_id
    SEEN[webrtc_id] += 1
    out = (frame.astype(np.float32) * level).astype(np.uint8)
    if SEEN[webrtc_id] % 10 == 0:
        return out, AdditionalOutputs(SEEN[webrtc_id], float(out.mean()))
    return out


def show_outputs(frames, history, count, mean):
    """additional_outputs_handler: (current Frames, current History, *outputs.args)."""
    history = f"{history or ''} {count}".strip()
    return count, history[-200:]


ui_outputs = Stream(
    scale_and_count,
    modality="video",
    mode="send-receive",
    additional_inputs=[gr.Slider(minimum=0, maximum=1, value=1, step=0.05, label="Level")],
    additional_outputs=[gr.Number(label="Frames"), gr.Textbox(label="History")],
    additional_outputs_handler=show_outputs,
    ui_args={"title": "Scale and count"},
)
