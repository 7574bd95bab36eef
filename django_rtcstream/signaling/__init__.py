"""The wire: HTTP offer view (FastRTC compatible), WebSocket signaling consumer, metadata."""
