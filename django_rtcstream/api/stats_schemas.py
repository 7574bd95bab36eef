"""The OpenAPI schemas of a session's stats (``sessions/stats.py``): one sample, the
charted history, the summary written at close. ``openapi.build`` puts them in the
document's components and points the session's stats fields at them."""

from __future__ import annotations

from typing import Any

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


def stats_schemas() -> dict[str, Any]:
    """The components StatsSample, StatsHistory and StatsSummary."""
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
