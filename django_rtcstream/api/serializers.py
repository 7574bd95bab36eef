"""DRF serializers derived from a stream's declared ``additional_inputs``.

A slider becomes a ``FloatField`` with its bounds, a whole-number ``Number``
an ``IntegerField``, a dropdown a ``ChoiceField`` (or ``MultipleChoiceField``),
a checkbox a ``BooleanField``, a textbox a ``CharField``. Every field is
optional: an input hook request changes only the inputs it names.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from django_rtcstream.inputs import InputSpec

_cache: dict[int, type[serializers.Serializer]] = {}


def field_for(spec: InputSpec) -> serializers.Field:
    common: dict[str, Any] = {"required": False, "label": spec.label or spec.name}
    if spec.kind in ("slider", "number"):
        bounds = {"min_value": spec.minimum, "max_value": spec.maximum}
        if spec.kind == "number" and spec.precision == 0:
            return serializers.IntegerField(**bounds, **common)
        return serializers.FloatField(**bounds, **common)
    if spec.kind == "dropdown":
        choices = spec.choice_values()
        if spec.multiselect:
            return serializers.MultipleChoiceField(choices=choices, **common)
        return serializers.ChoiceField(choices=choices, **common)
    if spec.kind == "checkbox":
        return serializers.BooleanField(**common)
    if spec.kind == "textbox":
        return serializers.CharField(
            allow_blank=True, max_length=spec.max_length, trim_whitespace=False, **common
        )
    return serializers.JSONField(**common)


def input_serializer_class(stream: Any) -> type[serializers.Serializer]:
    """The stream's own ``input_serializer``, or one built from its declarations."""
    if stream.input_serializer is not None:
        return stream.input_serializer
    cached = _cache.get(id(stream))
    if cached is None:
        fields = {spec.name: field_for(spec) for spec in stream.inputs.specs}
        name = "".join(
            p.capitalize() for p in (stream.name or "stream").replace("-", "_").split("_")
        )
        cached = type(f"{name}InputSerializer", (serializers.Serializer,), fields)
        _cache[id(stream)] = cached
    return cached


class SessionSerializer(serializers.Serializer):
    """A session as the sessions API shows it."""

    id = serializers.UUIDField(read_only=True)
    webrtc_id = serializers.CharField(read_only=True)
    stream = serializers.CharField(read_only=True)
    channel = serializers.CharField(read_only=True)
    state = serializers.CharField(read_only=True)
    worker = serializers.CharField(read_only=True)
    user = serializers.CharField(source="user_id", read_only=True, allow_null=True)
    client_address = serializers.IPAddressField(read_only=True, allow_null=True)
    inputs = serializers.JSONField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    connected_at = serializers.DateTimeField(read_only=True)
    closed_at = serializers.DateTimeField(read_only=True)
    heartbeat_at = serializers.DateTimeField(read_only=True)
    close_reason = serializers.CharField(read_only=True)
    call_sid = serializers.CharField(read_only=True)
    frames_in = serializers.IntegerField(read_only=True)
    frames_out = serializers.IntegerField(read_only=True)
    messages_out = serializers.IntegerField(read_only=True)
    stuck_calls = serializers.IntegerField(read_only=True)
    # Network and media figures (sessions/stats.py; schemas StatsSample, StatsHistory and
    # StatsSummary in the OpenAPI document): {} until the first sample.
    stats = serializers.JSONField(read_only=True)
    stats_history = serializers.JSONField(read_only=True)
    stats_summary = serializers.JSONField(read_only=True)
