"""get_current_context() and Warning() inside a video handler."""

from django_rtcstream import AdditionalOutputs, Stream, Warning, get_current_context

frames_seen = {}  # webrtc_id -> frames handled


def watch(frame):
    webrtc_id = get_current_context().webrtc_id
    count = frames_seen.get(webrtc_id, 0) + 1
    frames_seen[webrtc_id] = count
    if count == 1 and frame.mean() < 60:
        Warning("It is too dark to see anything")
    if count % 15 == 0:
        return frame, AdditionalOutputs(webrtc_id, count)
    return frame


stream = Stream(watch, modality="video", mode="send-receive")
