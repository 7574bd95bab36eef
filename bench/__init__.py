"""Benchmark of django-rtcstream against a bare aiortc floor and FastRTC (see bench/README.md)."""
