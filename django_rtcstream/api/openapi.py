"""An OpenAPI 3.1 document of every HTTP endpoint, built from the registered streams.

Signaling and SSE are plain async Django views (DRF has no async views), so a
DRF schema generator would miss them; and each stream's input hook takes a
different body. The document is therefore built here, per stream, from the
same declarations that validate requests: a slider's bounds in the schema are
the bounds the hook enforces.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET

from django_rtcstream import __version__, registry
from django_rtcstream.errors import ErrorCode
from django_rtcstream.inputs import InputSpec

FAILURE = {
    "type": "object",
    "required": ["status", "meta"],
    "properties": {
        "status": {"const": "failed"},
        "meta": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {
                "error": {
                    "type": "string",
                    "examples": [ErrorCode.CONCURRENCY_LIMIT_REACHED.value],
                },
                "message": {"type": "string"},
                "limit": {"type": "integer"},
                "fields": {"type": "object", "description": "Messages per request field."},
            },
        },
        "errors": {"type": "object", "description": "Messages per input (the input hook's 400)."},
    },
}


# What every endpoint accepts as a session id (sessions.bus.WEBRTC_ID_RE); anything else
# is 400 invalid_webrtc_id.
WEBRTC_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
SUCCESS = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"const": "success"}},
    "additionalProperties": False,
}


def _failures(*codes: int) -> dict[str, Any]:
    return {
        str(c): {
            "description": "Refused",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Failure"}}},
        }
        for c in codes
    }


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def input_schema(spec: InputSpec) -> dict[str, Any]:
    if spec.kind in ("slider", "number"):
        # Whole-number sliders (integer minimum and step) take and give ints, as in Gradio:
        # the hook refuses 440.5 for Slider(50, 4000, step=10).
        schema: dict[str, Any] = {"type": "integer" if spec.is_integer() else "number"}
        if spec.minimum is not None:
            schema["minimum"] = spec.minimum
        if spec.maximum is not None:
            schema["maximum"] = spec.maximum
    elif spec.kind == "dropdown":
        choice = {"enum": spec.choice_values()}
        schema = {"type": "array", "items": choice} if spec.multiselect else choice
    elif spec.kind == "checkbox":
        schema = {"type": "boolean"}
    elif spec.kind == "textbox":
        schema = {"type": "string", "maxLength": spec.max_length}
    else:
        schema = {}
    if spec.label:
        schema["title"] = spec.label
    default = spec.default()
    if default is not None:
        schema["default"] = default
    return schema


def build(prefix: str) -> dict[str, Any]:
    """The document for the app mounted at ``prefix`` (e.g. ``/rtc/``)."""
    p = prefix.rstrip("/")
    stream_param = {
        "name": "stream",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": registry.stream_names()},
    }
    session_id = {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    }
    token = {
        "name": "X-Session-Token",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "The token returned with the answer.",
    }
    offer_body = {
        "oneOf": [
            {
                "type": "object",
                "required": ["type", "sdp"],
                "properties": {
                    "type": {"const": "offer"},
                    "sdp": {"type": "string"},
                    "webrtc_id": WEBRTC_ID,
                },
            },
            {
                "type": "object",
                "required": ["type", "candidate", "webrtc_id"],
                "properties": {
                    "type": {"const": "ice-candidate"},
                    "webrtc_id": WEBRTC_ID,
                    "candidate": {
                        "type": ["object", "null"],
                        "properties": {
                            "candidate": {"type": "string"},
                            "sdpMid": {"type": ["string", "null"]},
                            "sdpMLineIndex": {"type": ["integer", "null"]},
                        },
                    },
                },
            },
            {
                "type": "object",
                "required": ["type", "webrtc_id"],
                "properties": {
                    "type": {"const": "close"},
                    "webrtc_id": WEBRTC_ID,
                    "token": {"type": "string"},
                },
            },
        ]
    }
    paths: dict[str, Any] = {
        f"{p}/streams/": {
            "get": {
                "summary": "Registered streams",
                "operationId": "listStreams",
                "responses": {"200": _json({"type": "object"})},
            }
        },
        f"{p}/{{stream}}/config": {
            "get": {
                "summary": "A stream's metadata and the ICE configuration for clients",
                "operationId": "getStreamConfig",
                "parameters": [stream_param],
                "responses": {"200": _json({"type": "object"}), **_failures(404)},
            }
        },
        f"{p}/{{stream}}/webrtc/offer": {
            "post": {
                "summary": "Offer (FastRTC compatible), trickled ICE candidate, or hang-up",
                "operationId": "postOffer",
                "parameters": [stream_param],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": offer_body}},
                },
                "responses": {
                    "200": _json(
                        {
                            "oneOf": [
                                {
                                    "type": "object",
                                    "required": ["sdp", "type", "webrtc_id", "token"],
                                    "properties": {
                                        "sdp": {"type": "string"},
                                        "type": {"const": "answer"},
                                        "webrtc_id": {"type": "string"},
                                        "token": {"type": "string"},
                                    },
                                },
                                SUCCESS,
                            ]
                        },
                        "The answer (an offer), or success (a candidate, a hang-up)",
                    ),
                    **_failures(400, 403, 404, 409, 413, 429, 503),
                },
            }
        },
        f"{p}/{{stream}}/outputs": {
            "get": {
                "summary": "The session's AdditionalOutputs as Server-Sent Events",
                "operationId": "streamOutputs",
                "parameters": [
                    stream_param,
                    token,
                    {"name": "webrtc_id", "in": "query", "required": True, "schema": WEBRTC_ID},
                    {
                        "name": "ticket",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "A single-use ticket from streamOutputsTicket "
                        "(keeps the session token out of URLs).",
                    },
                    {
                        "name": "token",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "The session token (FastRTC style): it ends up "
                        "in access logs; prefer a ticket.",
                    },
                ],
                "responses": {
                    "200": {
                        "description": "event: output / event: end",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **_failures(400, 403, 404, 503),
                },
            }
        },
        f"{p}/{{stream}}/outputs/ticket": {
            "post": {
                "summary": "A single-use ticket for the SSE output hook (for EventSource)",
                "operationId": "streamOutputsTicket",
                "parameters": [stream_param, token],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["webrtc_id"],
                                "properties": {"webrtc_id": WEBRTC_ID, "token": {"type": "string"}},
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["ticket", "expires_in"],
                            "properties": {
                                "ticket": {"type": "string"},
                                "expires_in": {"type": "integer"},
                            },
                        }
                    ),
                    **_failures(400, 403, 404, 413),
                },
            }
        },
        f"{p}/{{stream}}/telephone/incoming": {
            "post": {
                "summary": "Twilio's voice webhook: TwiML that connects the call to the stream",
                "operationId": "telephoneIncoming",
                "parameters": [
                    stream_param,
                    {
                        "name": "X-Twilio-Signature",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "Required (and checked) when TWILIO_AUTH_TOKEN is set.",
                    },
                ],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "CallSid": {"type": "string"},
                                    "From": {"type": "string"},
                                    "To": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "TwiML: <Connect><Stream url=...>",
                        "content": {"application/xml": {"schema": {"type": "string"}}},
                    },
                    **_failures(400, 403, 404, 413),
                },
            }
        },
        f"{p}/sessions/": {
            "get": {
                "summary": "Sessions (staff)",
                "operationId": "listSessions",
                "parameters": [
                    {
                        "name": name,
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": description,
                    }
                    for name, description in [
                        ("stream", "Only this stream's sessions."),
                        ("state", "Only sessions in this state."),
                        ("webrtc_id", "Only sessions with this id."),
                        ("live", "'1' or 'true': only sessions that have not ended."),
                    ]
                ],
                "responses": {
                    "200": _json(
                        {"type": "array", "items": {"$ref": "#/components/schemas/Session"}}
                    ),
                    **_failures(403),
                },
            }
        },
        f"{p}/sessions/{{id}}/": {
            "get": {
                "summary": "One session (staff)",
                "operationId": "getSession",
                "parameters": [session_id],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Session"}),
                    **_failures(403, 404),
                },
            }
        },
        f"{p}/sessions/{{id}}/close/": {
            "post": {
                "summary": "Close a session on whichever worker holds it (staff)",
                "operationId": "closeSession",
                "parameters": [session_id],
                "responses": {"200": _json(SUCCESS), **_failures(403, 404, 409, 503)},
            }
        },
    }
    schemas: dict[str, Any] = {
        "Failure": FAILURE,
        "Session": _session_schema(),
        **_stats_schemas(),
    }
    for name, stream in registry.get_streams().items():
        component = (
            "".join(part.capitalize() for part in name.replace("-", "_").split("_")) + "Inputs"
        )
        schemas[component] = {
            "type": "object",
            "required": ["webrtc_id"],
            "properties": {
                "webrtc_id": WEBRTC_ID,
                "token": {"type": "string"},
                **{spec.name: input_schema(spec) for spec in stream.inputs.specs},
            },
            "additionalProperties": False,
        }
        paths[f"{p}/{name}/input"] = {
            "post": {
                "summary": f"Set the inputs of a {name!r} session",
                "operationId": f"setInput_{name}",
                "parameters": [token],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{component}"}
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["status", "inputs"],
                            "properties": {
                                "status": {"const": "success"},
                                "inputs": {
                                    "type": "object",
                                    "description": "Every input's value now.",
                                    "properties": {
                                        spec.name: input_schema(spec)
                                        for spec in stream.inputs.specs
                                    },
                                },
                            },
                        }
                    ),
                    **_failures(400, 403, 404, 413, 503),
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "django-rtcstream", "version": __version__},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _session_schema() -> dict[str, Any]:
    from django_rtcstream.api.serializers import SessionSerializer

    kinds = {
        "UUIDField": ("string", "uuid"),
        "DateTimeField": ("string", "date-time"),
        "IntegerField": ("integer", None),
        "IPAddressField": ("string", None),
    }
    properties: dict[str, Any] = {}
    for name, field in SessionSerializer().fields.items():
        kind, fmt = kinds.get(type(field).__name__, ("string", None))
        if name in STATS_FIELDS:
            properties[name] = {"$ref": f"#/components/schemas/{STATS_FIELDS[name]}"}
            continue
        if type(field).__name__ == "JSONField":
            properties[name] = {}
            continue
        properties[name] = (
            {"type": [kind, "null"]} if fmt is None else {"type": [kind, "null"], "format": fmt}
        )
    return {"type": "object", "properties": properties}


# Session fields holding stats (sessions/stats.py) -> their schema's name.
STATS_FIELDS = {
    "stats": "StatsSample",
    "stats_history": "StatsHistory",
    "stats_summary": "StatsSummary",
}

# What each figure means, for the schema (sessions/readings.py says where it comes from).
STATS_FIGURES = {
    "rtt_ms": "Round-trip time to the client, ms (WebRTC sessions whose server sends media).",
    "jitter_in_ms": "Interarrival jitter of the client's media at the server, ms.",
    "jitter_out_ms": "Jitter of the server's media as the client reports it, ms.",
    "packets_lost_in": "Packets of the client's media lost so far.",
    "packets_lost_out": "Packets of the server's media the client reports lost so far.",
    "loss_in": "Fraction of the client's packets lost since the previous sample (0-1).",
    "loss_out": "Fraction of the server's packets lost, as the client last reported (0-1).",
    "bitrate_in_kbps": "What the link carried from the client since the previous sample, kbit/s.",
    "bitrate_out_kbps": "What the link carried to the client since the previous sample, kbit/s.",
    "bytes_in": "Bytes received from the client so far.",
    "bytes_out": "Bytes sent to the client so far.",
    "frames_in": "Frames handed to the handler so far.",
    "frames_out": "Frames the handler produced so far.",
    "frames_decoded": "Video frames out of the decoder so far.",
    "frames_dropped": "Frames the server dropped so far (stale video, audio it fell behind on).",
    "fps_in": "Frames handed to the handler per second since the previous sample.",
    "fps_out": "Frames produced per second since the previous sample.",
    "audio_level_in": "The client's audio level, dBov (-127 silence, 0 full scale).",
}


def _stats_schemas() -> dict[str, Any]:
    from django_rtcstream.sessions import readings, stats

    number = {"type": ["number", "null"]}
    sample = {
        "type": "object",
        "description": "One sample; a figure the session's transport does not give is null. "
        "Also the data of the data channel's 'stats' message.",
        "properties": {
            "t": {"type": "number", "description": "When it was taken (Unix time, s)."},
            **{name: {**number, "description": STATS_FIGURES[name]} for name in readings.FIGURES},
        },
    }
    history = {
        "type": "object",
        "description": "The last STATS_HISTORY samples, one array per figure (oldest first).",
        "properties": {
            name: {"type": "array", "items": number} for name in ("t", *stats.HISTORY_FIGURES)
        },
    }
    figure = {
        "type": "object",
        "properties": {"median": number, "worst": number},
    }
    summary = {
        "type": "object",
        "description": "Median and worst of each figure over the session, written at close "
        "(worst: the highest RTT, jitter and loss; the lowest bitrate, frame rate and level).",
        "properties": {
            "samples": {"type": "integer"},
            **{
                name: {**figure, "description": STATS_FIGURES[name]}
                for name in (*stats.WORSE_WHEN_HIGHER, *stats.WORSE_WHEN_LOWER)
            },
        },
    }
    return {"StatsSample": sample, "StatsHistory": history, "StatsSummary": summary}


@require_GET
def schema_view(request: HttpRequest) -> JsonResponse:
    ns = request.resolver_match.namespace if request.resolver_match else "rtcstream"
    prefix = reverse(f"{ns}:streams")[: -len("streams/")]
    return JsonResponse(build(prefix))
