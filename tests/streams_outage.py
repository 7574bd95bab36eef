"""A stream for tests/test_broker_outage.py: an echo that also publishes outputs."""

from __future__ import annotations

from django_rtcstream import AdditionalOutputs, Slider, Stream
from tests.streams import Echo


class ReportingEcho(Echo):
    """Echoes audio (times its gain) and every 25th chunk (2 a second) publishes
    ``AdditionalOutputs(chunks emitted, current gain)``."""

    def __init__(self) -> None:
        super().__init__()
        self.emitted = 0

    def copy(self):
        return ReportingEcho()

    def emit(self):
        chunk = super().emit()
        if chunk is None:
            return None
        self.emitted += 1
        if self.emitted % 25 == 0:
            gain = self.latest_args[1] if len(self.latest_args) > 1 else 1.0
            return chunk, AdditionalOutputs(self.emitted, float(gain))
        return chunk


echo_report = Stream(
    ReportingEcho(),
    modality="audio",
    mode="send-receive",
    additional_inputs=[Slider(minimum=0, maximum=1, value=1.0, label="Gain")],
)
