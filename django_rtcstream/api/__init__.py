"""Side channels of a session: the input hook and the SSE output hook."""
