"""Audio over WebSockets (FastRTC's protocol) and telephone calls (Twilio Media Streams),
as Channels consumers on the same session runtime as WebRTC."""
